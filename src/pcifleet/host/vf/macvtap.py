"""Macvtap links in passthrough mode over a VF netdev, for ``macvtap`` vnic ports.

With vnic type ``macvtap`` the VF's netdev stays on the host and the guest gets a virtio NIC
backed by a macvtap link on top of it (libvirt ``<interface type='direct'>`` with
``mode='passthrough'``). In passthrough mode the macvtap takes over its lower device: only one
macvtap may sit on it, it shares the lower device's MAC (setting the macvtap's MAC sets the
VF's too) and starts with the lower device's MTU.

``MacvtapPlugger.plug`` creates that link (pyroute2 ``link("add", kind="macvtap",
link=<lower index>, macvtap_mode="passthru")``), optionally sets MAC and MTU, and sets it up;
if a step after the creation fails it deletes the link again, so nothing half-made stays
behind. ``unplug`` deletes it and refuses to delete a link that is not a macvtap.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any, Final

from pyroute2.netlink.exceptions import NetlinkError

from pcifleet.domain.errors import InvalidInput, MacvtapError
from pcifleet.host.vf.model import is_multicast, is_valid_ifname, normalize_mac
from pcifleet.host.vf.netlink import run_in_netns

#: Linux IFNAMSIZ (16) minus the terminating NUL
MAX_IFNAME: Final = 15
MIN_MTU: Final = 68
MAX_MTU: Final = 65535
PASSTHROUGH: Final = "passthru"
_IFF_UP: Final = 0x1


@dataclass(frozen=True, slots=True)
class MacvtapLink:
    """A macvtap link as the kernel reports it."""

    ifname: str
    index: int
    lower_ifname: str
    lower_index: int
    #: ``passthru`` for the links ``plug`` makes
    mode: str
    mac: str
    mtu: int
    admin_up: bool


def check_ifname(value: str, field: str) -> str:
    """A Linux interface name: 1..15 characters, no blanks, ``/`` or ``:``, not ``.``/``..``."""
    if not is_valid_ifname(value):
        raise InvalidInput(
            f"{field} {value!r} is not a valid interface name (1..{MAX_IFNAME} characters, "
            "no blanks, '/' or ':')",
            field=field,
            rule="ifname",
        )
    return value


class MacvtapPlugger:
    """Create, read and delete passthrough macvtap links (optionally inside ``netns``)."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns

    def plug(
        self, lower_ifname: str, ifname: str, *, mac: str | None = None, mtu: int | None = None
    ) -> MacvtapLink:
        """Create ``ifname`` in passthrough mode over ``lower_ifname``, set it up, read it back."""
        check_ifname(lower_ifname, "lower_ifname")
        check_ifname(ifname, "ifname")
        wanted_mac = _check_mac(mac)
        _check_mtu(mtu)

        def operation(ipr: Any) -> MacvtapLink:
            lower = _lookup(ipr, lower_ifname, ifname, "find lower device")
            create = {"ifname": ifname, "kind": "macvtap", "link": lower}
            _call(ifname, "create", ipr.link, "add", macvtap_mode=PASSTHROUGH, **create)
            index = _lookup(ipr, ifname, ifname, "find created link")
            try:
                _configure(ipr, ifname, index, wanted_mac, mtu)
            except MacvtapError:
                _call(ifname, "delete after failure", ipr.link, "del", index=index)
                raise
            return _read(ipr, ifname)

        return run_in_netns(self._netns, operation)

    def read(self, ifname: str) -> MacvtapLink:
        check_ifname(ifname, "ifname")
        return run_in_netns(self._netns, lambda ipr: _read(ipr, ifname))

    def unplug(self, ifname: str) -> bool:
        """Delete the macvtap ``ifname``; False when it was already gone."""
        check_ifname(ifname, "ifname")

        def operation(ipr: Any) -> bool:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                return False
            _read(ipr, ifname)  # refuses anything that is not a macvtap
            _call(ifname, "delete", ipr.link, "del", index=found[0])
            return True

        return run_in_netns(self._netns, operation)


def _check_mac(mac: str | None) -> str | None:
    if mac is None:
        return None
    value = normalize_mac(mac)
    if is_multicast(value) or value == "00:00:00:00:00:00":
        raise InvalidInput(
            f"mac {value} must be a unicast, non-zero address", field="mac", rule="unicast"
        )
    return value


def _check_mtu(mtu: int | None) -> None:
    if mtu is None:
        return
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
        raise InvalidInput(
            f"mtu {mtu!r} must be an integer between {MIN_MTU} and {MAX_MTU}",
            field="mtu",
            rule="range",
        )


def _configure(ipr: Any, ifname: str, index: int, mac: str | None, mtu: int | None) -> None:
    if mac is not None:
        _call(ifname, "set mac", ipr.link, "set", index=index, address=mac)
    if mtu is not None:
        _call(ifname, "set mtu", ipr.link, "set", index=index, mtu=mtu)
    _call(ifname, "set up", ipr.link, "set", index=index, state="up")


def _call(link_name: str, step: str, function: Any, /, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except NetlinkError as error:
        raise _error(link_name, step, error.code) from error


def _error(ifname: str, step: str, code: int) -> MacvtapError:
    text = os.strerror(code)
    name = errno.errorcode.get(code, str(code))
    return MacvtapError(
        f"{text} ({name})", ifname=ifname, step=step, errno=code, errno_text=text, rule="kernel"
    )


def _lookup(ipr: Any, name: str, ifname: str, step: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise MacvtapError(f"no link named {name!r}", ifname=ifname, step=step, rule="missing_link")
    return int(found[0])


def _read(ipr: Any, ifname: str) -> MacvtapLink:
    message = _call(ifname, "read", ipr.link, "get", ifname=ifname)[0]
    info = message.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info is not None else None
    if kind != "macvtap":
        raise MacvtapError(
            f"the link is a {kind or 'plain'} link, not a macvtap",
            ifname=ifname,
            step="read",
            rule="not_macvtap",
        )
    lower_index = int(message.get("IFLA_LINK"))
    lower = _call(ifname, "read lower device", ipr.link, "get", index=lower_index)[0]
    return MacvtapLink(
        ifname=ifname,
        index=int(message["index"]),
        lower_ifname=str(lower.get("IFLA_IFNAME")),
        lower_index=lower_index,
        mode=str(info.get("IFLA_INFO_DATA").get("IFLA_MACVTAP_MODE")),
        mac=str(message.get("IFLA_ADDRESS")),
        mtu=int(message.get("IFLA_MTU")),
        admin_up=bool(int(message["flags"]) & _IFF_UP),
    )
