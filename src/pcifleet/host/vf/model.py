"""What a VF looks like in its PF's table, and what the agent asks it to become.

The kernel keeps per-VF settings in the PF driver and shows them in the PF's ``IFLA_VFINFO_LIST``
(``ip link show <pf>``): the administrative MAC, the VLAN tag (id, 802.1p priority, protocol),
the min/max transmit rate in Mbit/s, spoof checking, trust and the link state. ``VfState`` is
that row, read back; ``VfSettings`` is a desired change where ``None`` means "leave as is".

Values are checked when built, with the kernel's limits (VLAN id 0..4095, priority 0..7, rates
fit a ``u32``) plus the rules drivers and the SR-IOV CNI apply (a unicast MAC; a priority or an
802.1ad tag only with a VLAN id; a minimum rate not above a non-zero maximum), so an invalid
request fails the same way whichever configurator would have carried it out.

The VLAN id, priority and protocol travel in one netlink attribute, and so do both rates: they
are modelled as one value each (``VlanTag``, ``TxRate``), written together or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from pcifleet.domain.errors import InvalidVfRate, InvalidVfSetting

MAX_VLAN_ID: Final = 4095
MAX_VLAN_QOS: Final = 7
#: rates travel as ``u32`` Mbit/s in ``IFLA_VF_RATE``
MAX_RATE_MBPS: Final = 0xFFFFFFFF
ZERO_MAC: Final = "00:00:00:00:00:00"

#: a Linux interface name: 1..15 characters (IFNAMSIZ 16 with the NUL), no blanks, '/' or ':'
_IFNAME: Final = re.compile(r"[^\s/:]{1,15}")
_MAC: Final = re.compile(r"[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}")


class VfField(StrEnum):
    """One netlink write each, in the order configurators write them (``WRITE_ORDER``)."""

    MAC = "mac"
    VLAN = "vlan"
    RATE = "rate"
    SPOOFCHK = "spoofchk"
    TRUST = "trust"
    LINK_STATE = "link_state"


#: the order of writes; rollback undoes the written ones in reverse
WRITE_ORDER: Final = tuple(VfField)


class VlanProto(StrEnum):
    DOT1Q = "802.1Q"
    DOT1AD = "802.1ad"

    @property
    def ethertype(self) -> int:
        return 0x8100 if self is VlanProto.DOT1Q else 0x88A8

    @classmethod
    def from_ethertype(cls, value: int) -> VlanProto:
        for proto in cls:
            if proto.ethertype == value:
                return proto
        raise InvalidVfSetting(
            f"ethertype {value:#06x} is neither 802.1Q (0x8100) nor 802.1ad (0x88a8)",
            field="vlan_proto",
            rule="ethertype",
        )


class LinkState(StrEnum):
    """``ip link set <pf> vf <n> state auto|enable|disable``; kernel values 0, 1, 2."""

    AUTO = "auto"
    ENABLE = "enable"
    DISABLE = "disable"

    @property
    def kernel_value(self) -> int:
        return _LINK_STATES.index(self)

    @classmethod
    def from_kernel(cls, value: int) -> LinkState:
        if not 0 <= value < len(_LINK_STATES):
            raise InvalidVfSetting(
                f"kernel link state {value} is not 0 (auto), 1 (enable) or 2 (disable)",
                field="link_state",
                rule="range",
            )
        return _LINK_STATES[value]


_LINK_STATES: Final = (LinkState.AUTO, LinkState.ENABLE, LinkState.DISABLE)


def _check_int(value: object, field: str, limit: int, error: type[InvalidVfSetting]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"must be an integer, got {value!r}", field=field, rule="type")
    if not 0 <= value <= limit:
        raise error(f"{value} is not between 0 and {limit}", field=field, rule="range")
    return value


def _check_bool(value: object, field: str) -> None:
    if not isinstance(value, bool):
        raise InvalidVfSetting(f"must be true or false, got {value!r}", field=field, rule="type")


def normalize_mac(value: object, field: str = "mac") -> str:
    """``aa:bb:cc:dd:ee:ff`` in lower case; accepts ``-`` separators and any case."""
    if not isinstance(value, str) or not _MAC.fullmatch(value.strip()):
        raise InvalidVfSetting(
            f"{value!r} is not a MAC address (six hex octets, e.g. fa:16:3e:00:00:01)",
            field=field,
            rule="format",
        )
    return value.strip().lower().replace("-", ":")


def is_valid_ifname(value: object) -> bool:
    """Whether the kernel would accept ``value`` as an interface name."""
    return isinstance(value, str) and bool(_IFNAME.fullmatch(value)) and value not in (".", "..")


def is_multicast(mac: str) -> bool:
    """The I/G bit (lowest bit of the first octet); the broadcast address has it too."""
    return bool(int(mac[:2], 16) & 1)


@dataclass(frozen=True, slots=True)
class VlanTag:
    """VLAN id (0 = untagged), 802.1p priority and tag protocol, written as one attribute."""

    vid: int = 0
    qos: int = 0
    proto: VlanProto = VlanProto.DOT1Q

    def __post_init__(self) -> None:
        _check_int(self.vid, "vlan", MAX_VLAN_ID, InvalidVfSetting)
        _check_int(self.qos, "qos", MAX_VLAN_QOS, InvalidVfSetting)
        if not isinstance(self.proto, VlanProto):
            raise InvalidVfSetting(
                f"{self.proto!r} is not 802.1Q or 802.1ad", field="vlan_proto", rule="type"
            )

    def check_requestable(self) -> None:
        """Refuse a priority or an 802.1ad tag without a VLAN id (nothing would carry them)."""
        if self.vid == 0 and self.qos:
            raise InvalidVfSetting(
                "a non-zero priority needs a VLAN id", field="qos", rule="needs_vlan"
            )
        if self.vid == 0 and self.proto is VlanProto.DOT1AD:
            raise InvalidVfSetting("802.1ad needs a VLAN id", field="vlan_proto", rule="needs_vlan")


NO_VLAN: Final = VlanTag()


@dataclass(frozen=True, slots=True)
class TxRate:
    """Transmit rates in Mbit/s; 0 means no limit (max) or no guarantee (min)."""

    min_mbps: int = 0
    max_mbps: int = 0

    def __post_init__(self) -> None:
        _check_int(self.min_mbps, "min_tx_rate", MAX_RATE_MBPS, InvalidVfRate)
        _check_int(self.max_mbps, "max_tx_rate", MAX_RATE_MBPS, InvalidVfRate)
        if self.max_mbps and self.min_mbps > self.max_mbps:
            raise InvalidVfRate(
                f"minimum {self.min_mbps} Mbit/s is above maximum {self.max_mbps} Mbit/s",
                field="min_tx_rate",
                rule="min_above_max",
            )


NO_RATE: Final = TxRate()


@dataclass(frozen=True, slots=True)
class VfState:
    """One row of the PF's VF table.

    ``mac`` is the administrative MAC (``00:00:00:00:00:00`` when none is set). ``spoofchk``
    and ``trust`` are None when the driver does not report them (the kernel then shows -1);
    such a field is never written back on restore.
    """

    index: int
    mac: str = ZERO_MAC
    vlan: VlanTag = NO_VLAN
    rate: TxRate = NO_RATE
    spoofchk: bool | None = True
    trust: bool | None = False
    link_state: LinkState = LinkState.AUTO

    def __post_init__(self) -> None:
        _check_int(self.index, "vf", 0xFFFFFFFF, InvalidVfSetting)
        object.__setattr__(self, "mac", normalize_mac(self.mac))

    @property
    def min_tx_rate(self) -> int:
        return self.rate.min_mbps

    @property
    def max_tx_rate(self) -> int:
        return self.rate.max_mbps

    def value(self, field: VfField) -> object:
        """The value a write of ``field`` carries (``rate`` is the pair)."""
        return getattr(self, field.value)


@dataclass(frozen=True, slots=True)
class VfSettings:
    """A desired VF state; every ``None`` field is left as it is.

    ``min_tx_rate`` and ``max_tx_rate`` may be given alone: the configurator keeps the VF's
    current other rate (the kernel takes both in one attribute, and sending only one would
    zero the other — Neutron LP#1962844).
    """

    mac: str | None = None
    vlan: VlanTag | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: LinkState | None = None

    def __post_init__(self) -> None:
        if self.mac is not None:
            mac = normalize_mac(self.mac)
            if is_multicast(mac):
                raise InvalidVfSetting(
                    f"{mac} is a multicast address; a VF needs a unicast MAC",
                    field="mac",
                    rule="unicast",
                )
            object.__setattr__(self, "mac", mac)
        if self.vlan is not None:
            self.vlan.check_requestable()
        self._check_rates()
        for name in ("spoofchk", "trust"):
            if getattr(self, name) is not None:
                _check_bool(getattr(self, name), name)
        if self.link_state is not None and not isinstance(self.link_state, LinkState):
            raise InvalidVfSetting(
                f"{self.link_state!r} is not auto, enable or disable",
                field="link_state",
                rule="type",
            )

    def _check_rates(self) -> None:
        if self.min_tx_rate is not None:
            _check_int(self.min_tx_rate, "min_tx_rate", MAX_RATE_MBPS, InvalidVfRate)
        if self.max_tx_rate is not None:
            _check_int(self.max_tx_rate, "max_tx_rate", MAX_RATE_MBPS, InvalidVfRate)
        if self.min_tx_rate is not None and self.max_tx_rate is not None:
            TxRate(self.min_tx_rate, self.max_tx_rate)

    @property
    def fields(self) -> tuple[VfField, ...]:
        """The fields this request writes, in write order."""
        given = {
            VfField.MAC: self.mac is not None,
            VfField.VLAN: self.vlan is not None,
            VfField.RATE: self.min_tx_rate is not None or self.max_tx_rate is not None,
            VfField.SPOOFCHK: self.spoofchk is not None,
            VfField.TRUST: self.trust is not None,
            VfField.LINK_STATE: self.link_state is not None,
        }
        return tuple(field for field in WRITE_ORDER if given[field])


def target_state(current: VfState, desired: VfSettings) -> VfState:
    """``current`` with ``desired`` applied; checks the resulting rate pair (min <= max)."""
    rate = current.rate
    if desired.min_tx_rate is not None or desired.max_tx_rate is not None:
        rate = TxRate(
            rate.min_mbps if desired.min_tx_rate is None else desired.min_tx_rate,
            rate.max_mbps if desired.max_tx_rate is None else desired.max_tx_rate,
        )
    return replace(
        current,
        mac=current.mac if desired.mac is None else desired.mac,
        vlan=current.vlan if desired.vlan is None else desired.vlan,
        rate=rate,
        spoofchk=current.spoofchk if desired.spoofchk is None else desired.spoofchk,
        trust=current.trust if desired.trust is None else desired.trust,
        link_state=current.link_state if desired.link_state is None else desired.link_state,
    )


def changed_fields(current: VfState, target: VfState) -> tuple[VfField, ...]:
    """Fields whose value differs, in write order; a field unknown in ``target`` never does."""
    return tuple(
        field
        for field in WRITE_ORDER
        if target.value(field) is not None and target.value(field) != current.value(field)
    )


def settings_from_state(state: VfState, fields: Iterable[VfField]) -> VfSettings:
    """A request writing ``fields`` with ``state``'s values (fields the driver hides skipped)."""
    wanted = set(fields)
    return VfSettings(
        mac=state.mac if VfField.MAC in wanted else None,
        vlan=state.vlan if VfField.VLAN in wanted else None,
        min_tx_rate=state.rate.min_mbps if VfField.RATE in wanted else None,
        max_tx_rate=state.rate.max_mbps if VfField.RATE in wanted else None,
        spoofchk=state.spoofchk if VfField.SPOOFCHK in wanted else None,
        trust=state.trust if VfField.TRUST in wanted else None,
        link_state=state.link_state if VfField.LINK_STATE in wanted else None,
    )
