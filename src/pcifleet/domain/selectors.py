"""Selectors: one small object per criterion of a device spec, chosen from a registry by key.

This is the Kubernetes SR-IOV device plugin's pipeline shape: a spec is a list of selectors,
all of which must accept a device (AND across keys; a list value inside one key is an OR).
Each selector answers ``matches(device, host)`` and explains itself: ``describe()`` says what
it wants and ``why_not(device, host)`` says why a device was refused, for the "why is this
device not assignable" question operators always ask.

Some questions depend on the rest of the host, never on sysfs (the domain does no I/O): "is
the address a spec names a PF?" (Nova then matches the PF *and* its VFs), "which device owns
netdev ``ens1f0``?", "does this VF or its PF have a VPD card serial number?". They are answered
by :class:`HostDevices`, a read-only view of one host's discovered devices.

Keys (Nova's first, then pcifleet's own):

=============== ============================================================================
``vendor_id``   hex, Nova's rules (``%04x``, ``*`` = any); a list is an OR (native)
``product_id``  same
``address``     glob string or regex mapping (:mod:`pcifleet.domain.address`); a single address
                that is a PF on the host also matches that PF's VFs (Nova)
``devname``     netdev name; resolves on the host; a PF also matches its VFs (Nova)
``driver``      bound driver name(s), e.g. ``vfio-pci``; ``""`` matches unbound devices
``class``       PCI class code prefix(es): 2, 4 or 6 hex digits (``"02"``, ``"0200"``,
                ``"020000"``) or a name from :data:`CLASS_NAMES` (``"ethernet"``)
``numa_node``   NUMA node number(s); ``null`` selects devices whose node is unknown
``pf``          PF netdev name with optional VF index ranges: ``"ens1f0#0-3,7"``; selects VFs
``pf_address``  PF address glob with optional VF index ranges: ``"0000:3b:00.0#0-3"``; VFs
=============== ============================================================================

``remote_managed`` is not a selector key but a spec tag; a remote-managed spec adds
:class:`RemoteManagedSelector` (the device or its PF must expose a VPD card serial number).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final

from pcifleet.domain.address import (
    AddressGlob,
    AddressPattern,
    PciAddress,
    parse_address_pattern,
)
from pcifleet.domain.device import Device
from pcifleet.domain.errors import InvalidSpec

ANY: Final = "*"
MAX_ID: Final = 0xFFFF


# ------------------------------------------------------------------------- host view


class HostDevices(Mapping[PciAddress, Device]):
    """Read-only view of one host's devices, by address, with the lookups selectors need.

    ``card_serials`` holds the VPD card serial number of the devices that expose one (read by
    discovery); Nova matches a ``remote_managed`` spec only on devices with one.
    """

    __slots__ = ("_by_address", "_by_netdev", "_card_serials", "_ordered")

    def __init__(
        self, devices: Iterable[Device], card_serials: Mapping[PciAddress, str] | None = None
    ) -> None:
        self._by_address: dict[PciAddress, Device] = {d.address: d for d in devices}
        self._by_netdev: dict[str, Device] = {
            name: d for d in self._by_address.values() for name in d.netdevs
        }
        self._card_serials: dict[PciAddress, str] = dict(card_serials or {})
        self._ordered: tuple[PciAddress, ...] | None = None

    @classmethod
    def of(cls, *devices: Device) -> HostDevices:
        return cls(devices)

    def __getitem__(self, address: PciAddress) -> Device:
        return self._by_address[address]

    def __iter__(self) -> Iterator[PciAddress]:
        return iter(self._by_address)

    def __len__(self) -> int:
        return len(self._by_address)

    def ordered(self) -> tuple[PciAddress, ...]:
        """The addresses in numeric order (computed once)."""
        if self._ordered is None:
            self._ordered = tuple(sorted(self._by_address))
        return self._ordered

    def is_pf(self, address: PciAddress) -> bool:
        """Whether the device at ``address`` exists and is an SR-IOV physical function."""
        device = self._by_address.get(address)
        return device is not None and device.is_pf

    def by_netdev(self, name: str) -> Device | None:
        """The device owning netdev ``name`` (Nova reads ``/sys/class/net/<name>/device``)."""
        return self._by_netdev.get(name)

    def card_serial(self, device: Device) -> str | None:
        """The VPD card serial number of the device, else of its parent PF (Nova's rule)."""
        own = self._card_serials.get(device.address)
        if own:
            return own
        return None if device.parent is None else self._card_serials.get(device.parent) or None

    def vfs_of(self, pf: PciAddress) -> tuple[Device, ...]:
        """The VFs (and vDPA devices) whose parent is ``pf``, in address order."""
        return tuple(sorted((d for d in self.values() if d.parent == pf), key=_address_of))


def _address_of(device: Device) -> PciAddress:
    return device.address


# ------------------------------------------------------------------------- selectors


class Selector(abc.ABC):
    """One criterion. Subclasses are frozen dataclasses registered under their ``key``."""

    __slots__ = ()

    #: the spec key that builds this selector
    key: ClassVar[str]
    #: evaluation order inside a spec: cheap tests first, host lookups last
    cost: ClassVar[int] = 1

    @abc.abstractmethod
    def matches(self, device: Device, host: HostDevices) -> bool:
        """Whether this criterion accepts ``device`` on ``host``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What the criterion wants, e.g. ``vendor_id 8086``."""

    @abc.abstractmethod
    def why_not(self, device: Device, host: HostDevices) -> str:
        """Why ``device`` is refused, showing the device's own value."""


def _invalid(key: str, rule: str, detail: str) -> InvalidSpec:
    return InvalidSpec(detail, field=key, rule=rule)


def _as_list(key: str, value: object, kinds: tuple[type, ...]) -> list[object]:
    """A scalar or a non-empty list of scalars of ``kinds`` (bool is never an int here)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _invalid(key, "empty", f"{key} must not be an empty list")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise _invalid(key, "type", f"{key} ({item!r}) must be a {names} or a list of them")
    return list(items)


def _set_text(values: Iterable[str]) -> str:
    ordered = sorted(values)
    return ordered[0] if len(ordered) == 1 else "{" + ", ".join(ordered) + "}"


def parse_hex_id(key: str, value: object) -> str:
    """Nova's vendor/product id rule: ``*`` stays, else hex <= 0xffff formatted ``%04x``."""
    if not isinstance(value, str):
        raise _invalid(key, "type", f"property {key} ({value!r}) must be a string")
    text = value.strip()
    if text == ANY:
        return ANY
    try:
        number = int(text, 16)
    except ValueError:
        number = -1
    if number < 0:
        raise _invalid(key, "hex", f"property {key} ('{text}') does not parse as a hex number.")
    if number > MAX_ID:
        raise _invalid(
            key,
            "range",
            f"property {key} ({text}) is greater than the maximum allowable value ({MAX_ID:X}).",
        )
    return f"{number:04x}"


@dataclass(frozen=True, slots=True)
class VendorSelector(Selector):
    ids: frozenset[str]

    key: ClassVar[str] = "vendor_id"
    cost: ClassVar[int] = 0

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        ids = {parse_hex_id(cls.key, v) for v in _as_list(cls.key, value, (str,))}
        return None if ANY in ids else cls(frozenset(ids))

    def _have(self, device: Device) -> str:
        return device.vendor_id

    def matches(self, device: Device, host: HostDevices) -> bool:
        return self._have(device) in self.ids

    def describe(self) -> str:
        return f"{self.key} {_set_text(self.ids)}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        verb = "!=" if len(self.ids) == 1 else "not in"
        return f"{self.key} {self._have(device)} {verb} {_set_text(self.ids)}"


@dataclass(frozen=True, slots=True)
class ProductSelector(VendorSelector):
    key: ClassVar[str] = "product_id"

    def _have(self, device: Device) -> str:
        return device.product_id


@dataclass(frozen=True, slots=True)
class AddressSelector(Selector):
    """Nova's address match: a single address naming a PF also matches that PF's VFs."""

    pattern: AddressPattern
    _single: PciAddress | None = field(init=False, repr=False, compare=False, default=None)

    key: ClassVar[str] = "address"
    cost: ClassVar[int] = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "_single", self.pattern.single())

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        return cls(parse_address_pattern(value))

    def pf_address(self, host: HostDevices) -> PciAddress | None:
        """The PF this spec names on ``host`` (Nova's "physical function" flag), if any."""
        single = self._single
        return single if single is not None and host.is_pf(single) else None

    def matches(self, device: Device, host: HostDevices) -> bool:
        if self.pattern.matches(device.address):
            return True
        single = self._single
        return single is not None and device.parent == single and host.is_pf(single)

    def describe(self) -> str:
        return f"address {self.pattern}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        return f"address {device.address} not in {self.pattern}"


@dataclass(frozen=True, slots=True)
class DevnameSelector(Selector):
    """Nova's ``devname``: the device owning the netdev; if it is a PF, its VFs too."""

    name: str

    key: ClassVar[str] = "devname"
    cost: ClassVar[int] = 3

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        if not isinstance(value, str):
            raise _invalid(cls.key, "type", f"devname ({value!r}) must be a string")
        name = value.strip()
        return cls(name) if name else None

    def matches(self, device: Device, host: HostDevices) -> bool:
        owner = host.by_netdev(self.name)
        if owner is None:
            return False
        if device is owner or device.address == owner.address:
            return True
        return owner.is_pf and device.parent == owner.address

    def describe(self) -> str:
        return f"devname {self.name}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        owner = host.by_netdev(self.name)
        if owner is None:
            return f"devname {self.name} is not present on the host"
        return f"devname {self.name} is {owner.address}, not {device.address}"


@dataclass(frozen=True, slots=True)
class DriverSelector(Selector):
    names: frozenset[str]

    key: ClassVar[str] = "driver"

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        names = {str(v).strip() for v in _as_list(cls.key, value, (str,))}
        return cls(frozenset(names))

    def matches(self, device: Device, host: HostDevices) -> bool:
        return (device.driver or "") in self.names

    def describe(self) -> str:
        return f"driver {_set_text(self.names)}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        return f"driver {device.driver or '(none)'} not in {_set_text(self.names)}"


#: class names accepted by the ``class`` key, as class-code prefixes (PCI code and ID
#: assignment specification; 0b40 is the co-processor class QAT accelerators report)
CLASS_NAMES: Final[Mapping[str, str]] = {
    "storage": "01",
    "nvme": "0108",
    "network": "02",
    "ethernet": "0200",
    "infiniband": "0207",
    "display": "03",
    "vga": "0300",
    "3d": "0302",
    "coprocessor": "0b40",
    "crypto": "10",
    "accelerator": "12",
}

_CLASS_HEX: Final = re.compile(r"(?:0x)?([0-9a-fA-F]{2}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6})")


def _class_prefix(value: str) -> str:
    text = value.strip().lower()
    if text in CLASS_NAMES:
        return CLASS_NAMES[text]
    match = _CLASS_HEX.fullmatch(text)
    if match is None:
        raise _invalid(
            "class",
            "format",
            f"class ({value!r}) must be 2, 4 or 6 hex digits (base class, subclass, "
            f"programming interface) or one of: {', '.join(CLASS_NAMES)}",
        )
    return match[1]


@dataclass(frozen=True, slots=True)
class ClassSelector(Selector):
    """PCI class code prefix: ``02`` any network controller, ``0200`` Ethernet."""

    prefixes: tuple[str, ...]

    key: ClassVar[str] = "class"

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        items = _as_list(cls.key, value, (str,))
        return cls(tuple(sorted({_class_prefix(str(v)) for v in items})))

    def matches(self, device: Device, host: HostDevices) -> bool:
        code = device.class_code
        return code is not None and code.startswith(self.prefixes)

    def describe(self) -> str:
        return f"class {_set_text(self.prefixes)}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        return f"class {device.class_code or '(unknown)'} not in {_set_text(self.prefixes)}"


@dataclass(frozen=True, slots=True)
class NumaSelector(Selector):
    """NUMA node(s); ``None`` stands for "unknown" (the kernel's -1)."""

    nodes: frozenset[int | None]

    key: ClassVar[str] = "numa_node"

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        nodes: set[int | None] = set()
        for item in _as_list(cls.key, value, (int, str, type(None))):
            nodes.add(_numa_node(item))
        return cls(frozenset(nodes))

    def matches(self, device: Device, host: HostDevices) -> bool:
        return device.numa_node in self.nodes

    def describe(self) -> str:
        return f"numa_node {_set_text(_node_text(n) for n in self.nodes)}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        wanted = _set_text(_node_text(n) for n in self.nodes)
        return f"numa_node {_node_text(device.numa_node)} not in {wanted}"


def _numa_node(item: object) -> int | None:
    if item is None:
        return None
    text = str(item).strip()
    if not text.isdigit():
        raise _invalid(
            "numa_node", "format", f"numa_node ({item!r}) must be a node number >= 0 or null"
        )
    return int(text)


def _node_text(node: int | None) -> str:
    return "unknown" if node is None else str(node)


# --------------------------------------------------------------- VF index ranges


@dataclass(frozen=True, slots=True)
class IndexRanges:
    """Inclusive VF index ranges, as written after ``#``: ``"0-3,7"``."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, key: str, text: str) -> IndexRanges:
        ranges = []
        for part in text.split(","):
            low_text, dash, high_text = part.strip().partition("-")
            if not low_text.isdigit() or (dash and not high_text.isdigit()):
                raise _invalid(
                    key,
                    "vf_range",
                    f"{key} VF index list ({text!r}) must be comma-separated indexes "
                    "or ranges such as 0-3,7",
                )
            low = int(low_text)
            high = int(high_text) if dash else low
            if high < low:
                raise _invalid(key, "vf_range", f"{key} VF index range {part.strip()} is empty")
            ranges.append((low, high))
        return cls(tuple(sorted(ranges)))

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and any(lo <= index <= hi for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


def _split_ranges(key: str, text: str) -> tuple[str, IndexRanges | None]:
    head, hash_, tail = text.strip().partition("#")
    if not head.strip():
        raise _invalid(key, "format", f"{key} ({text!r}) names no PF")
    return head.strip(), IndexRanges.parse(key, tail) if hash_ else None


def _in_ranges(device: Device, ranges: IndexRanges | None) -> bool:
    return ranges is None or device.vf_index in ranges


def _with_ranges(head: str, ranges: IndexRanges | None) -> str:
    return head if ranges is None else f"{head}#{ranges}"


@dataclass(frozen=True, slots=True)
class PfNameSelector(Selector):
    """VFs of the PF with netdev name ``ens1f0``, optionally only indexes ``#0-3,7``."""

    entries: tuple[tuple[str, IndexRanges | None], ...]

    key: ClassVar[str] = "pf"
    cost: ClassVar[int] = 3

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        items = _as_list(cls.key, value, (str,))
        return cls(tuple(_split_ranges(cls.key, str(v)) for v in items))

    def matches(self, device: Device, host: HostDevices) -> bool:
        if device.parent is None:
            return False
        for name, ranges in self.entries:
            pf = host.by_netdev(name)
            if pf is not None and pf.address == device.parent and _in_ranges(device, ranges):
                return True
        return False

    def describe(self) -> str:
        return f"pf {_set_text(_with_ranges(n, r) for n, r in self.entries)}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        if device.parent is None:
            return f"{device.address} is not a VF (wanted {self.describe()})"
        return f"VF {device.vf_index} of {device.parent} is not in {self.describe()}"


@dataclass(frozen=True, slots=True)
class PfAddressSelector(Selector):
    """VFs whose PF address matches a glob, optionally only indexes ``#0-3``."""

    entries: tuple[tuple[AddressGlob, IndexRanges | None], ...]

    key: ClassVar[str] = "pf_address"
    cost: ClassVar[int] = 2

    @classmethod
    def from_value(cls, value: object) -> Selector | None:
        entries = []
        for item in _as_list(cls.key, value, (str,)):
            head, ranges = _split_ranges(cls.key, str(item))
            entries.append((AddressGlob.parse(head), ranges))
        return cls(tuple(entries))

    def matches(self, device: Device, host: HostDevices) -> bool:
        parent = device.parent
        return parent is not None and any(
            glob.matches(parent) and _in_ranges(device, ranges) for glob, ranges in self.entries
        )

    def describe(self) -> str:
        return f"pf_address {_set_text(_with_ranges(str(g), r) for g, r in self.entries)}"

    def why_not(self, device: Device, host: HostDevices) -> str:
        if device.parent is None:
            return f"{device.address} is not a VF (wanted {self.describe()})"
        return f"VF {device.vf_index} of {device.parent} is not in {self.describe()}"


@dataclass(frozen=True, slots=True)
class RemoteManagedSelector(Selector):
    """Nova: a remote-managed device needs a VPD card serial number (own or its PF's)."""

    key: ClassVar[str] = "remote_managed"
    cost: ClassVar[int] = 4

    def matches(self, device: Device, host: HostDevices) -> bool:
        return bool(host.card_serial(device))

    def describe(self) -> str:
        return "remote_managed (a VPD card serial number)"

    def why_not(self, device: Device, host: HostDevices) -> str:
        return f"remote_managed needs a VPD card serial number; {device.address} has none"


# ---------------------------------------------------------------------- registry


#: spec key -> the selector class that parses its value (``from_value`` returns None for a
#: wildcard such as ``vendor_id: "*"``, which selects everything and needs no selector)
REGISTRY: Final[Mapping[str, Callable[[object], Selector | None]]] = {
    cls.key: cls.from_value
    for cls in (
        VendorSelector,
        ProductSelector,
        AddressSelector,
        DevnameSelector,
        DriverSelector,
        ClassSelector,
        NumaSelector,
        PfNameSelector,
        PfAddressSelector,
    )
}


def build_selector(key: str, value: object) -> Selector | None:
    """The selector for one spec key, or None when the value selects everything."""
    return REGISTRY[key](value)


def sort_selectors(selectors: Iterable[Selector]) -> tuple[Selector, ...]:
    """Cheap criteria first; ties keep the order written."""
    return tuple(sorted(selectors, key=lambda s: s.cost))
