"""Network interfaces of PCI functions: which netdevs a function owns, and their state.

A netdev sits directly under its function (``0000:22:00.0/net/eth0``) or one level deeper when
a bus driver is in between (virtio: ``0000:42:00.0/virtio0/net/eth1``; mlx5 with auxiliary
devices: ``0000:3b:00.0/mlx5_core.eth.0/net/...``). ``/sys/class/net`` links every netdev to
its real directory, so one pass over it finds the nested ones for every function at once.
Discovery lists each function's own ``net/`` directory first and looks up in ``class/net`` only
the names it did not find there.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from pcifleet.host.sysfs import SysfsReader


@dataclass(frozen=True, slots=True)
class NetDev:
    name: str
    mac: str | None = None
    #: ``up``, ``down``, ``unknown``, ... as the kernel reports it
    operstate: str | None = None
    #: Mbit/s; None when the kernel does not know (link down reads -1 or fails)
    speed_mbps: int | None = None
    mtu: int | None = None
    #: e.g. ``p0``, ``pf0vf3`` (switchdev representors); None when the driver has none
    phys_port_name: str | None = None
    phys_switch_id: str | None = None


#: the attributes that change while a netdev lives
_STATE: Final = ("address", "operstate", "speed", "mtu")

#: ``phys_port_name`` and ``phys_switch_id``: fixed for the life of a netdev
PortIdentity = tuple[str | None, str | None]


def read_port_identity(reader: SysfsReader, directory: str) -> PortIdentity:
    return (
        reader.try_text(f"{directory}/phys_port_name"),
        reader.try_text(f"{directory}/phys_switch_id"),
    )


def read_netdev(
    reader: SysfsReader, directory: str, name: str, port: PortIdentity | None = None
) -> NetDev:
    """The facts of ``directory`` (``.../net/<name>``); a missing attribute is None.

    Every read is lenient: drivers refuse some attributes (EOPNOTSUPP on ``phys_port_name``,
    EINVAL on ``speed`` when the link is down), which is normal rather than a fault. ``port``
    passes a port identity read earlier, sparing two reads on a rescan.
    """
    port_name, switch_id = read_port_identity(reader, directory) if port is None else port
    mac, operstate, speed, mtu = reader.try_texts(directory, _STATE)
    return NetDev(
        name=name,
        mac=mac,
        operstate=operstate,
        speed_mbps=_positive(speed),
        mtu=_positive(mtu),
        phys_port_name=port_name,
        phys_switch_id=switch_id,
    )


def _positive(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None


def netdev_dirs_by_function(
    reader: SysfsReader, known: Collection[str] = ()
) -> dict[str, list[tuple[str, str]]]:
    """``class/net`` as function name -> [(ifname, netdev directory)], for the netdevs not in
    ``known`` (those already found directly under their function need no link lookup).

    The nearest path component above the netdev that looks like a PCI address is its
    function; virtual netdevs (``lo``, bridges) have none and are left out.
    """
    found: dict[str, list[tuple[str, str]]] = {}
    class_net = reader.path("sys", "class", "net")
    for ifname in reader.list_dir(class_net) or ():
        if ifname in known:
            continue
        target = reader.link_target(f"{class_net}/{ifname}")
        if target is None:
            continue
        function = _owning_function(target)
        if function is not None:
            found.setdefault(function, []).append((ifname, target))
    return found


_FUNCTION_NAME: Final = re.compile(r"[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def _owning_function(path: str) -> str | None:
    parts = path.split("/")
    # .../<function>/[<bus device>/]net/<ifname>: search upwards from the "net" component.
    for part in reversed(parts[:-2]):
        if _FUNCTION_NAME.fullmatch(part):
            return part
    return None
