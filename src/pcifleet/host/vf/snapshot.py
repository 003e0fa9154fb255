"""A VF's pre-plug snapshot as flat text attributes, so it can outlive the agent process.

``VfManager`` keeps snapshots in memory; an agent that is killed or restarted between the plug
and the unplug of an instance would forget them and could no longer give the VF back as it was
(a MAC the guest set would stay). The applier therefore writes each snapshot into the domain's
``<metadata>`` (which the hypervisor keeps with the domain) and, after a restart, hands it back
to the manager with :meth:`~pcifleet.host.vf.service.VfManager.adopt`.

The format is one attribute per field (``mac``, ``vlan``, ``qos``, ``proto``, ``min-tx-rate``,
``max-tx-rate``, ``spoofchk``, ``trust``, ``link-state``); ``spoofchk``/``trust`` are left out
when the driver hides them (the snapshot then never writes them back). Reading checks every
value with the model's own rules and raises ``InvalidVfSetting`` naming the attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

from pcifleet.domain.errors import InvalidVfSetting
from pcifleet.host.vf.model import LinkState, TxRate, VfState, VlanProto, VlanTag

_BOOLS: Final = {"true": True, "false": False}

_E = TypeVar("_E", VlanProto, LinkState)


def snapshot_attributes(state: VfState) -> dict[str, str]:
    """``state`` (without its index, which the caller stores) as text attributes."""
    attributes = {
        "mac": state.mac,
        "vlan": str(state.vlan.vid),
        "qos": str(state.vlan.qos),
        "proto": state.vlan.proto.value,
        "min-tx-rate": str(state.rate.min_mbps),
        "max-tx-rate": str(state.rate.max_mbps),
        "link-state": state.link_state.value,
    }
    for name, flag in (("spoofchk", state.spoofchk), ("trust", state.trust)):
        if flag is not None:
            attributes[name] = "true" if flag else "false"
    return attributes


def snapshot_from_attributes(attributes: Mapping[str, str], index: int) -> VfState:
    """The :class:`VfState` that :func:`snapshot_attributes` wrote for VF ``index``."""
    return VfState(
        index=index,
        mac=_required(attributes, "mac"),
        vlan=VlanTag(
            vid=_integer(attributes, "vlan"),
            qos=_integer(attributes, "qos"),
            proto=_choice(VlanProto, attributes, "proto"),
        ),
        rate=TxRate(_integer(attributes, "min-tx-rate"), _integer(attributes, "max-tx-rate")),
        spoofchk=_flag(attributes, "spoofchk"),
        trust=_flag(attributes, "trust"),
        link_state=_choice(LinkState, attributes, "link-state"),
    )


def _required(attributes: Mapping[str, str], name: str) -> str:
    value = attributes.get(name)
    if value is None:
        raise InvalidVfSetting("missing from the VF snapshot", field=name, rule="required")
    return value


def _integer(attributes: Mapping[str, str], name: str) -> int:
    text = _required(attributes, name)
    if not text.isdigit():
        raise InvalidVfSetting(
            f"{text!r} is not a non-negative integer", field=name, rule="integer"
        )
    return int(text)


def _flag(attributes: Mapping[str, str], name: str) -> bool | None:
    text = attributes.get(name)
    if text is None:
        return None
    if text not in _BOOLS:
        raise InvalidVfSetting(f"{text!r} is not true or false", field=name, rule="boolean")
    return _BOOLS[text]


def _choice(kind: type[_E], attributes: Mapping[str, str], name: str) -> _E:
    text = _required(attributes, name)
    try:
        return kind(text)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidVfSetting(
            f"{text!r} is not one of {allowed}", field=name, rule="choice"
        ) from None


__all__ = ["snapshot_attributes", "snapshot_from_attributes"]
