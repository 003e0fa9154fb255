"""The VF configurator on real netlink: pyroute2 ``RTM_GETLINK``/``RTM_SETLINK`` on the PF.

Reads ask for the PF with ``ext_mask=1`` (``RTEXT_FILTER_VF``) so the kernel adds
``IFLA_NUM_VF`` and the ``IFLA_VFINFO_LIST`` table; writes are one ``link("set", index=<pf>,
vf={...})`` per field (``ip link set <pf> vf <n> ...``), so that a refusal names the field (the
kernel stops at the first failing VF attribute of a message and does not say which it was).

pyroute2's ``vf`` dict, per field:

====================  ==============================================================
mac                   ``{"vf": n, "mac": "aa:bb:..."}``                -> IFLA_VF_MAC
vlan (802.1Q)         ``{"vf": n, "vlan": {"vlan": id, "qos": prio}}``  -> IFLA_VF_VLAN
vlan (802.1ad)        ``{"vf": n, "vlan": [{"vlan", "qos", "proto"}]}`` -> IFLA_VF_VLAN_LIST
rate                  ``{"vf": n, "rate": {"min_tx_rate", "max_tx_rate"}}`` (Mbit/s)
spoofchk / trust      ``{"vf": n, "spoofchk": 0|1}`` / ``{"vf": n, "trust": 0|1}``
link_state            ``{"vf": n, "link_state": 0 auto | 1 enable | 2 disable}``
====================  ==============================================================

A link without SR-IOV (veth, bridge, a VF) has no ``IFLA_NUM_VF``: ``num_vfs`` is 0 and asking
it for a VF raises ``VfNotFound`` (rule ``index``), exactly as the fake does.

Each operation opens its own ``IPRoute`` socket (about 1 ms) and closes it: no state is shared
between threads, which pyroute2's per-thread transports would not tolerate. With ``netns`` the
operation runs in a short-lived thread that first enters that namespace (``setns`` changes only
the calling thread), so tests can drive links inside a namespace of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

from pcifleet.domain.errors import VfError
from pcifleet.host.vf.configurator import LINK_FIELD, check_index, errno_error
from pcifleet.host.vf.model import (
    LinkState,
    TxRate,
    VfField,
    VfSettings,
    VfState,
    VlanProto,
    VlanTag,
    target_state,
)

_T = TypeVar("_T")

#: what the kernel shows for spoof check / trust when the driver does not report them (-1)
_UNREPORTED: Final = 0xFFFFFFFF


def run_in_netns(name: str | None, operation: Callable[[Any], _T]) -> _T:
    """Run ``operation(ipr)`` with a fresh ``IPRoute`` in namespace ``name`` (None: ours)."""
    if name is None:
        with IPRoute() as ipr:
            return operation(ipr)
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            pyroute2_netns.setns(name, flags=0)  # flags=0: never create it by accident
            with IPRoute() as ipr:
                outcome["value"] = operation(ipr)
        except BaseException as error:
            outcome["error"] = error

    worker = threading.Thread(target=body, name=f"netns-{name}")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    value: _T = outcome["value"]
    return value


class NetlinkVfConfigurator:
    """``VfConfigurator`` over pyroute2; see ``pcifleet.host.vf.configurator`` for the contract."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns

    def num_vfs(self, pf_ifname: str) -> int:
        return self._run(lambda ipr: num_vfs_of(_get_pf(ipr, pf_ifname, 0)))

    def read(self, pf_ifname: str, vf_index: int) -> VfState:
        return self._run(lambda ipr: _read(ipr, pf_ifname, vf_index)[1])

    def apply(self, pf_ifname: str, vf_index: int, desired: VfSettings) -> VfState:
        def operation(ipr: Any) -> VfState:
            link_index, current = _read(ipr, pf_ifname, vf_index)
            target = target_state(current, desired)
            for field in desired.fields:
                _write(ipr, link_index, pf_ifname, vf_index, field, target)
            return _read(ipr, pf_ifname, vf_index)[1]

        return self._run(operation)

    def _run(self, operation: Callable[[Any], _T]) -> _T:
        return run_in_netns(self._netns, operation)


def _get_pf(ipr: Any, pf: str, vf: int) -> Any:
    try:
        return ipr.link("get", ifname=pf, ext_mask=1)[0]
    except NetlinkError as error:
        raise errno_error(pf, vf, LINK_FIELD, error.code) from error


def _read(ipr: Any, pf: str, vf: int) -> tuple[int, VfState]:
    message = _get_pf(ipr, pf, vf)
    check_index(pf, vf, num_vfs_of(message))
    for state in parse_vf_table(message):
        if state.index == vf:
            return int(message["index"]), state
    raise VfError(
        f"the kernel's VF table has no row for VF {vf}",
        pf=pf,
        vf=vf,
        field="vfinfo",
        rule="missing_row",
    )


def _write(ipr: Any, link_index: int, pf: str, vf: int, field: VfField, target: VfState) -> None:
    try:
        ipr.link("set", index=link_index, vf=vf_request(vf, field, target))
    except NetlinkError as error:
        raise errno_error(pf, vf, field.value, error.code) from error


def num_vfs_of(message: Any) -> int:
    """``IFLA_NUM_VF`` of a link message; 0 when absent (no SR-IOV on that link)."""
    return int(message.get("IFLA_NUM_VF") or 0)


def parse_vf_table(message: Any) -> list[VfState]:
    """Every row of the ``IFLA_VFINFO_LIST`` of a link message (empty when absent)."""
    table = message.get("IFLA_VFINFO_LIST")
    if table is None:
        return []
    return [parse_vf_info(info) for info in table.get_attrs("IFLA_VF_INFO")]


def parse_vf_info(info: Any) -> VfState:
    """One ``IFLA_VF_INFO`` as decoded by pyroute2 (attributes the kernel always sends)."""
    mac = info.get("IFLA_VF_MAC")
    return VfState(
        index=int(mac["vf"]),
        mac=str(mac["mac"]),
        vlan=_vlan(info),
        rate=_rate(info),
        spoofchk=_flag(info.get("IFLA_VF_SPOOFCHK"), "spoofchk"),
        trust=_flag(info.get("IFLA_VF_TRUST"), "trust"),
        link_state=LinkState.from_kernel(int(info.get("IFLA_VF_LINK_STATE")["link_state"])),
    )


def _vlan(info: Any) -> VlanTag:
    proto = VlanProto.DOT1Q
    vlan = info.get("IFLA_VF_VLAN")
    vlan_list = info.get("IFLA_VF_VLAN_LIST")
    if vlan_list is not None:
        entries = vlan_list.get_attrs("IFLA_VF_VLAN_INFO")
        if entries:
            vlan = entries[0]
            proto = VlanProto.from_ethertype(int(vlan["proto"]))
    if vlan is None:
        return VlanTag()
    return VlanTag(int(vlan["vlan"]), int(vlan["qos"]), proto)


def _rate(info: Any) -> TxRate:
    rate = info.get("IFLA_VF_RATE")
    if rate is not None:
        return TxRate(int(rate["min_tx_rate"]), int(rate["max_tx_rate"]))
    legacy = info.get("IFLA_VF_TX_RATE")
    return TxRate(0, int(legacy["tx_rate"]) if legacy is not None else 0)


def _flag(attribute: Any, key: str) -> bool | None:
    if attribute is None or int(attribute[key]) == _UNREPORTED:
        return None
    return bool(attribute[key])


def vf_request(vf: int, field: VfField, target: VfState) -> dict[str, Any]:
    """pyroute2's ``vf=`` argument writing ``field`` of ``target`` on VF ``vf`` (a new dict:
    pyroute2 consumes it)."""
    if field is VfField.MAC:
        return {"vf": vf, "mac": target.mac}
    if field is VfField.VLAN:
        tag = target.vlan
        if tag.proto is VlanProto.DOT1Q:
            return {"vf": vf, "vlan": {"vlan": tag.vid, "qos": tag.qos}}
        return {"vf": vf, "vlan": [{"vlan": tag.vid, "qos": tag.qos, "proto": tag.proto.ethertype}]}
    if field is VfField.RATE:
        rate = {"min_tx_rate": target.rate.min_mbps, "max_tx_rate": target.rate.max_mbps}
        return {"vf": vf, "rate": rate}
    if field is VfField.LINK_STATE:
        return {"vf": vf, "link_state": target.link_state.kernel_value}
    return {"vf": vf, field.value: int(bool(target.value(field)))}
