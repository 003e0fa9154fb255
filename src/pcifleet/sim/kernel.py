"""A fake kernel that reacts to sysfs writes in a fake tree the way Linux does.

``FakeKernel(root).write(path, value)`` has the signature of the host side's ``SysfsWriter``
protocol, so the agent's SR-IOV configuration runs unchanged against a built tree (or a copy of
a real capture). Writing a PF's ``sriov_numvfs`` follows ``sriov_numvfs_store`` in
``drivers/pci/iov.c``:

- not a number (``kstrtou16``) -> ``EINVAL``; above ``sriov_totalvfs`` -> ``ERANGE``;
- the current value -> nothing happens;
- no driver bound to the PF -> ``ENOENT``;
- ``0`` removes every VF; non-zero while VFs exist -> ``EBUSY`` (write 0 first).

New VFs get the VF device id, the PF's subsystem ids, NUMA node and CPUs, their own IOMMU group,
the driver of the catalogued model (when ``sriov_drivers_autoprobe`` is 1) and, for NICs bound
to their VF driver, a netdev ``<pf netdev>v<N>``. With ``vf_delay`` the VFs appear only that many
seconds after the write returned, as with real drivers (``settle()`` makes them appear now).

Read-only attributes refuse writes with ``EACCES`` as sysfs does; driver binding through
``bind``/``unbind`` is not simulated and says so (``EOPNOTSUPP``).
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.sim.catalogue import PciLink, find_by_ids
from pcifleet.sim.sysfs_builder import UNKNOWN_LINK, vf_mac
from pcifleet.sim.sysfs_layout import FunctionPlan, NetdevPlan, PciIds, SysfsLayout

READ_ONLY: Final = frozenset(
    {
        "vendor",
        "device",
        "subsystem_vendor",
        "subsystem_device",
        "revision",
        "class",
        "local_cpulist",
        "local_cpus",
        "modalias",
        "current_link_speed",
        "current_link_width",
        "max_link_speed",
        "max_link_width",
        "sriov_totalvfs",
        "sriov_offset",
        "sriov_stride",
        "sriov_vf_device",
        "address",
        "operstate",
        "speed",
        "ifindex",
        "phys_port_name",
        "phys_switch_id",
    }
)
NOT_SIMULATED: Final = frozenset({"bind", "unbind", "new_id", "remove_id", "remove", "rescan"})


def _error(code: int, path: Path, detail: str = "") -> OSError:
    message = os.strerror(code) + (f" ({detail})" if detail else "")
    return OSError(code, message, str(path))


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


def parse_u16(text: str) -> int | None:
    """``kstrtou16(buf, 0, ...)``: decimal, ``0x`` hex or ``0`` octal, one trailing newline."""
    body = text.removesuffix("\n").removeprefix("+")
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", body):
        value = int(body, 16)
    elif re.fullmatch(r"0[0-7]*", body):
        value = int(body, 8)
    elif re.fullmatch(r"[1-9][0-9]*", body):
        value = int(body)
    else:
        return None
    return value if value <= 0xFFFF else None


class FakeKernel:
    """Applies sysfs writes to the tree under ``root`` (``root/sys/...``)."""

    def __init__(self, root: Path, *, vf_delay: float = 0.0, hostname: str | None = None) -> None:
        self.root = root
        self.sys = root / "sys"
        self.vf_delay = vf_delay
        self.hostname = hostname or root.name
        self._layout = SysfsLayout(self.sys)
        self._lock = threading.RLock()
        self._pending: dict[Path, threading.Timer] = {}
        self._sys_real = Path(os.path.realpath(self.sys))

    # ------------------------------------------------------------------ protocol

    def write(self, path: Path, value: str) -> None:
        """Write ``value`` to the attribute at ``path`` and apply the kernel's side effects."""
        target = self._resolve(path)
        name = target.name
        if name in READ_ONLY:
            raise _error(errno.EACCES, path, "read-only attribute")
        if name in NOT_SIMULATED:
            raise _error(errno.EOPNOTSUPP, path, "not simulated by FakeKernel")
        with self._lock:
            if name == "sriov_numvfs":
                self._set_numvfs(target.parent, value, path)
            elif name == "driver_override":
                chosen = value.strip()
                target.write_text(f"{chosen or '(null)'}\n", encoding="ascii")
            else:
                target.write_text(value, encoding="ascii")

    def settle(self) -> None:
        """Make every delayed VF creation happen now."""
        with self._lock:
            pending = list(self._pending.items())
            self._pending.clear()
        for _, timer in pending:
            timer.cancel()
            function = timer.function
            function(*timer.args)

    def close(self) -> None:
        """Finish pending work so no timer thread outlives the kernel."""
        self.settle()

    def __enter__(self) -> FakeKernel:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ resolution

    def _resolve(self, path: Path) -> Path:
        full = path if path.is_absolute() else self.root / path
        real = Path(os.path.realpath(full))
        if not real.is_relative_to(self._sys_real):
            raise _error(errno.EACCES, path, "outside the fake sysfs tree")
        if real.is_dir():
            raise _error(errno.EISDIR, path)
        if not real.exists():
            raise _error(errno.ENOENT, path)
        return real

    # ------------------------------------------------------------------ sriov_numvfs

    def _set_numvfs(self, pf_dir: Path, value: str, path: Path) -> None:
        wanted = parse_u16(value)
        if wanted is None:
            raise _error(errno.EINVAL, path, f"not a number: {value!r}")
        total = int(_read(pf_dir / "sriov_totalvfs"))
        if wanted > total:
            raise _error(errno.ERANGE, path, f"{wanted} > sriov_totalvfs {total}")
        current = int(_read(pf_dir / "sriov_numvfs"))
        if wanted == current:
            return
        if not (pf_dir / "driver").is_symlink():
            raise _error(errno.ENOENT, path, "no driver bound to device; cannot configure SR-IOV")
        if wanted == 0:
            self._remove_vfs(pf_dir, current)
            return
        if current:
            raise _error(
                errno.EBUSY,
                path,
                f"{current} VFs already enabled. Disable before enabling {wanted} VFs",
            )
        (pf_dir / "sriov_numvfs").write_text(f"{wanted}\n", encoding="ascii")
        if self.vf_delay > 0:
            timer = threading.Timer(self.vf_delay, self._create_vfs, (pf_dir, wanted))
            timer.daemon = True
            self._pending[pf_dir] = timer
            timer.start()
        else:
            self._create_vfs(pf_dir, wanted)

    def _remove_vfs(self, pf_dir: Path, count: int) -> None:
        timer = self._pending.pop(pf_dir, None)
        if timer is not None:
            timer.cancel()
        for index in range(count):
            link = pf_dir / f"virtfn{index}"
            if link.is_symlink():
                self._layout.remove_function(PciAddress.parse(os.readlink(link).rsplit("/", 1)[1]))
                link.unlink()
        (pf_dir / "sriov_numvfs").write_text("0\n", encoding="ascii")

    def _create_vfs(self, pf_dir: Path, count: int) -> None:
        with self._lock:
            self._pending.pop(pf_dir, None)
            if int(_read(pf_dir / "sriov_numvfs")) != count:
                return
            template = _VfTemplate(self, pf_dir)
            for index in range(count):
                plan = template.plan(index)
                self._layout.add_function(plan)
                self._layout.add_virtfn_link(template.pf_rel, index, plan.address)

    # ------------------------------------------------------------------ counters

    def next_iommu_group(self) -> int:
        groups = self.sys / "kernel/iommu_groups"
        numbers = [int(n) for n in os.listdir(groups)] if groups.is_dir() else []
        return max(numbers, default=-1) + 1

    def next_ifindex(self) -> int:
        found = [1]
        net = self.sys / "class/net"
        for name in os.listdir(net) if net.is_dir() else ():
            index = net / name / "ifindex"
            if index.exists():
                found.append(int(_read(index)))
        return max(found) + 1

    def next_nvme(self) -> int:
        found = [-1]
        devices = self.sys / "bus/pci/devices"
        for name in os.listdir(devices):
            folder = devices / name / "nvme"
            if folder.is_dir():
                found += [int(n[4:]) for n in os.listdir(folder) if n[4:].isdigit()]
        return max(found) + 1


class _VfTemplate:
    """What every VF of one PF inherits, read once from the PF's directory."""

    def __init__(self, kernel: FakeKernel, pf_dir: Path) -> None:
        self.kernel = kernel
        self.pf = PciAddress.parse(pf_dir.name)
        self.pf_rel = os.path.relpath(pf_dir, kernel.sys)
        self.parent = os.path.relpath(pf_dir.parent, kernel.sys / "devices")
        read = _reader(pf_dir)
        vendor, pf_device = int(read("vendor"), 16), int(read("device"), 16)
        model = find_by_ids(vendor, pf_device)
        caps = model.sriov if model else None
        self.ids = PciIds(
            vendor,
            int(read("sriov_vf_device"), 16),
            int(read("subsystem_vendor"), 16),
            int(read("subsystem_device"), 16),
            int(read("revision"), 16),
            int(read("class"), 16),
        )
        self.offset, self.stride = int(read("sriov_offset")), int(read("sriov_stride"))
        self.numa_node = int(read("numa_node"))
        self.cpulist, self.cpus = read("local_cpulist"), read("local_cpus")
        autoprobe = read("sriov_drivers_autoprobe") != "0"
        self.driver = caps.vf_driver if caps and autoprobe else None
        self.link = self._link(pf_dir, caps.vf_link_reported if caps else False)
        self.netdev_base = _pf_netdev(pf_dir) if model and model.is_network else None
        self.speed = model.netdev_speed if model and model.netdev_speed is not None else -1
        self.nvme = bool(model and model.nvme_controller and self.driver == model.driver)
        self.grouped = (pf_dir / "iommu_group").is_symlink()

    @staticmethod
    def _link(pf_dir: Path, mirrored: bool) -> PciLink | None:
        if not (pf_dir / "current_link_speed").exists():
            return None
        if not mirrored:
            return UNKNOWN_LINK
        return PciLink(
            _read(pf_dir / "current_link_speed"), int(_read(pf_dir / "current_link_width"))
        )

    def plan(self, index: int) -> FunctionPlan:
        address = self.pf.offset(self.offset + self.stride * index)
        netdevs: tuple[NetdevPlan, ...] = ()
        if self.netdev_base is not None and self.driver is not None:
            netdevs = (
                NetdevPlan(
                    name=f"{self.netdev_base}v{index}",
                    mac=vf_mac(self.kernel.hostname, address),
                    ifindex=self.kernel.next_ifindex(),
                    operstate="up",
                    speed=self.speed,
                    mtu=1500,
                ),
            )
        return FunctionPlan(
            address=address,
            parent=self.parent,
            ids=self.ids,
            driver=self.driver,
            numa_node=self.numa_node,
            local_cpulist=self.cpulist,
            local_cpus=self.cpus,
            link=self.link,
            iommu_group=self.kernel.next_iommu_group() if self.grouped else None,
            physfn=self.pf,
            netdevs=netdevs,
            nvme_index=self.kernel.next_nvme() if self.nvme else None,
        )


def _reader(folder: Path) -> Callable[[str], str]:
    def read(name: str) -> str:
        return _read(folder / name)

    return read


def _pf_netdev(pf_dir: Path) -> str | None:
    for owner in [pf_dir, *sorted(pf_dir.glob("virtio*"))]:
        net = owner / "net"
        if net.is_dir():
            names = sorted(os.listdir(net))
            if names:
                return names[0]
    return None
