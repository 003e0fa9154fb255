"""How the kernel lays out one PCI function in sysfs, written into a fake tree.

Both the tree builder (from a profile) and the fake kernel (VFs appearing after a write to
``sriov_numvfs``) describe each function as a ``FunctionPlan`` and hand it to ``SysfsLayout``,
so the two can never disagree about the layout. Formats follow Linux 6.1 as captured in
``shared/sysfs-captures``: ids with ``0x`` and fixed width (``0x1b36``, ``0x010802``), SR-IOV
numbers without prefix (``sriov_vf_device`` = ``10``), ``driver_override`` = ``(null)`` when
unset, relative symlinks whose ``..`` count follows the directory depth.

Only the attributes that device discovery reads are written (creating files is the cost of a
build: about 15 us each on tmpfs, 0.3-1 ms on a busy ext4 disk); ``config`` holds just the
64-byte header.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.sim.catalogue import PciLink

DRIVER_FILES: Final = ("bind", "unbind", "new_id", "remove_id", "uevent")
RESERVED_REGIONS: Final = "0x00000000fee00000 0x00000000feefffff msi\n"


@dataclass(frozen=True, slots=True)
class PciIds:
    vendor: int
    device: int
    subsystem_vendor: int
    subsystem_device: int
    revision: int
    class_code: int


@dataclass(frozen=True, slots=True)
class NetdevPlan:
    name: str
    mac: str
    ifindex: int
    operstate: str
    speed: int
    mtu: int
    phys_port_name: str = ""
    phys_switch_id: str = ""


@dataclass(frozen=True, slots=True)
class SriovPlan:
    total: int
    num: int
    offset: int
    stride: int
    vf_device: int


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """Everything the kernel shows for one function."""

    address: PciAddress
    #: directory of the parent device, relative to ``sys/devices`` (``pci0000:20/0000:20:00.0``)
    parent: str
    ids: PciIds
    driver: str | None
    numa_node: int
    local_cpulist: str
    local_cpus: str
    link: PciLink | None = None
    driver_override: str | None = None
    iommu_group: int | None = None
    physfn: PciAddress | None = None
    sriov: SriovPlan | None = None
    netdevs: tuple[NetdevPlan, ...] = ()
    #: netdevs hang under ``virtio<N>/`` (virtio-net) instead of directly under ``net/``
    virtio_index: int | None = None
    nvme_index: int | None = None
    #: (secondary, subordinate) bus numbers of a bridge
    bridge_buses: tuple[int, int] | None = None

    @property
    def path(self) -> str:
        """The device directory relative to ``sys`` (``devices/pci0000:20/.../0000:21:00.0``)."""
        return f"devices/{self.parent}/{self.address}"


def _put(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def _up(path: str) -> str:
    """``../`` repeated once per component of ``path`` (relative to ``sys``)."""
    return "../" * (path.count("/") + 1)


def modalias(ids: PciIds) -> str:
    base, sub, prog = ids.class_code >> 16, (ids.class_code >> 8) & 0xFF, ids.class_code & 0xFF
    return (
        f"pci:v{ids.vendor:08X}d{ids.device:08X}sv{ids.subsystem_vendor:08X}"
        f"sd{ids.subsystem_device:08X}bc{base:02X}sc{sub:02X}i{prog:02X}"
    )


def config_header(ids: PciIds, *, bridge: bool) -> bytes:
    """The first 64 bytes of configuration space (what an unprivileged reader gets)."""
    head = struct.pack(
        "<HHHHBBBBBBBB",
        ids.vendor,
        ids.device,
        0x0406,
        0x0010,
        ids.revision,
        ids.class_code & 0xFF,
        (ids.class_code >> 8) & 0xFF,
        ids.class_code >> 16,
        0,
        0,
        1 if bridge else 0,
        0,
    )
    body = bytearray(64)
    body[: len(head)] = head
    if not bridge:
        body[0x2C:0x30] = struct.pack("<HH", ids.subsystem_vendor, ids.subsystem_device)
    return bytes(body)


class SysfsLayout:
    """Writes and removes functions under ``<root>/sys`` exactly as the kernel shows them."""

    def __init__(self, sys_root: Path) -> None:
        self.sys = sys_root
        self._base = str(sys_root)
        self._drivers: set[str] = set()
        self._groups: set[int] = set()

    # ------------------------------------------------------------------ skeleton

    def ensure_skeleton(self) -> None:
        for folder in ("bus/pci/devices", "bus/pci/drivers", "class/net", "devices/virtual/net"):
            os.makedirs(f"{self._base}/{folder}", exist_ok=True)

    def ensure_root_bus(self, domain: int, bus: int) -> str:
        """The host bridge directory ``pci<domain>:<bus>`` (relative to ``sys/devices``)."""
        name = f"pci{domain:04x}:{bus:02x}"
        folder = f"{self._base}/devices/{name}"
        if not os.path.isdir(folder):
            os.makedirs(folder)
            _put(f"{folder}/uevent", "")
        return name

    def ensure_driver(self, name: str) -> None:
        if name in self._drivers:
            return
        folder = f"{self._base}/bus/pci/drivers/{name}"
        if not os.path.isdir(folder):
            os.makedirs(folder)
            for file in DRIVER_FILES:
                _put(f"{folder}/{file}", "")
        self._drivers.add(name)

    def _ensure_group(self, group: int) -> str:
        folder = f"{self._base}/kernel/iommu_groups/{group}"
        if group not in self._groups:
            os.makedirs(f"{folder}/devices", exist_ok=True)
            _put(f"{folder}/type", "DMA-FQ\n")
            _put(f"{folder}/reserved_regions", RESERVED_REGIONS)
            self._groups.add(group)
        return folder

    # ------------------------------------------------------------------ functions

    def add_function(self, plan: FunctionPlan) -> None:
        """Create the device directory, its attributes and every link the kernel makes."""
        rel = plan.path
        folder = f"{self._base}/{rel}"
        os.mkdir(folder)
        self._write_attributes(folder, plan)
        up = _up(rel)
        os.symlink(f"{up}bus/pci", f"{folder}/subsystem")
        os.symlink(f"../../../{rel}", f"{self._base}/bus/pci/devices/{plan.address}")
        if plan.physfn is not None:
            os.symlink(f"../{plan.physfn}", f"{folder}/physfn")
        if plan.driver is not None:
            self.ensure_driver(plan.driver)
            os.symlink(f"{up}bus/pci/drivers/{plan.driver}", f"{folder}/driver")
            os.symlink(
                f"../../../../{rel}", f"{self._base}/bus/pci/drivers/{plan.driver}/{plan.address}"
            )
        if plan.iommu_group is not None:
            group = self._ensure_group(plan.iommu_group)
            os.symlink(f"{up}kernel/iommu_groups/{plan.iommu_group}", f"{folder}/iommu_group")
            os.symlink(f"../../../../{rel}", f"{group}/devices/{plan.address}")
        if plan.nvme_index is not None:
            self._write_nvme(folder, plan)
        self._write_netdevs(rel, plan)

    def _write_attributes(self, folder: str, plan: FunctionPlan) -> None:
        ids = plan.ids
        files = {
            "vendor": f"0x{ids.vendor:04x}\n",
            "device": f"0x{ids.device:04x}\n",
            "subsystem_vendor": f"0x{ids.subsystem_vendor:04x}\n",
            "subsystem_device": f"0x{ids.subsystem_device:04x}\n",
            "revision": f"0x{ids.revision:02x}\n",
            "class": f"0x{ids.class_code:06x}\n",
            "numa_node": f"{plan.numa_node}\n",
            "local_cpulist": f"{plan.local_cpulist}\n",
            "local_cpus": f"{plan.local_cpus}\n",
            "driver_override": f"{plan.driver_override or '(null)'}\n",
            "enable": "1\n" if plan.driver else "0\n",
            "modalias": modalias(ids) + "\n",
            "uevent": self._uevent(plan),
        }
        if plan.link is not None:
            files["current_link_speed"] = files["max_link_speed"] = f"{plan.link.speed}\n"
            files["current_link_width"] = files["max_link_width"] = f"{plan.link.width}\n"
        if plan.sriov is not None:
            files.update(sriov_files(plan.sriov))
        if plan.bridge_buses is not None:
            files["secondary_bus_number"] = f"{plan.bridge_buses[0]}\n"
            files["subordinate_bus_number"] = f"{plan.bridge_buses[1]}\n"
        for name, text in files.items():
            _put(f"{folder}/{name}", text)
        with open(f"{folder}/config", "wb") as handle:
            handle.write(config_header(ids, bridge=plan.bridge_buses is not None))

    @staticmethod
    def _uevent(plan: FunctionPlan) -> str:
        ids = plan.ids
        lines = [f"DRIVER={plan.driver}"] if plan.driver else []
        lines += [
            f"PCI_CLASS={ids.class_code:X}",
            f"PCI_ID={ids.vendor:04X}:{ids.device:04X}",
            f"PCI_SUBSYS_ID={ids.subsystem_vendor:04X}:{ids.subsystem_device:04X}",
            f"PCI_SLOT_NAME={plan.address}",
            f"MODALIAS={modalias(ids)}",
        ]
        return "\n".join(lines) + "\n"

    def _write_nvme(self, folder: str, plan: FunctionPlan) -> None:
        ctrl = f"{folder}/nvme/nvme{plan.nvme_index}"
        os.makedirs(ctrl)
        _put(f"{ctrl}/state", "live\n")
        _put(f"{ctrl}/transport", "pcie\n")
        _put(f"{ctrl}/address", f"{plan.address}\n")
        os.symlink(f"../../../{plan.address}", f"{ctrl}/device")

    def _write_netdevs(self, rel: str, plan: FunctionPlan) -> None:
        if not plan.netdevs:
            return
        owner = rel
        if plan.virtio_index is not None:
            owner = f"{rel}/virtio{plan.virtio_index}"
            self._write_virtio(owner)
        for netdev in plan.netdevs:
            net_rel = f"{owner}/net/{netdev.name}"
            net_dir = f"{self._base}/{net_rel}"
            os.makedirs(net_dir)
            for name, text in netdev_files(netdev).items():
                _put(f"{net_dir}/{name}", text)
            os.symlink(f"../../../{owner.rsplit('/', 1)[1]}", f"{net_dir}/device")
            os.symlink(f"{_up(net_rel)}class/net", f"{net_dir}/subsystem")
            os.symlink(f"../../{net_rel}", f"{self._base}/class/net/{netdev.name}")

    def _write_virtio(self, rel: str) -> None:
        folder = f"{self._base}/{rel}"
        os.mkdir(folder)
        _put(f"{folder}/vendor", "0x1af4\n")
        _put(f"{folder}/device", "0x0001\n")
        _put(f"{folder}/status", "0x0000000f\n")
        _put(f"{folder}/modalias", "virtio:d00000001v00001AF4\n")
        up = _up(rel)
        os.symlink(f"{up}bus/virtio/drivers/virtio_net", f"{folder}/driver")
        os.symlink(f"{up}bus/virtio", f"{folder}/subsystem")

    def add_virtfn_link(self, pf: FunctionPlan | str, index: int, vf: PciAddress) -> None:
        """``virtfn<index>`` in the PF directory, pointing at the VF's sibling directory."""
        rel = pf.path if isinstance(pf, FunctionPlan) else pf
        os.symlink(f"../{vf}", f"{self._base}/{rel}/virtfn{index}")

    # ------------------------------------------------------------------ removal

    def remove_function(self, address: PciAddress) -> None:
        """Undo ``add_function``: every link pointing at the function, then its directory."""
        bus_link = f"{self._base}/bus/pci/devices/{address}"
        folder = os.path.realpath(bus_link)
        driver = f"{folder}/driver"
        if os.path.islink(driver):
            name = os.path.basename(os.readlink(driver))
            _unlink(f"{self._base}/bus/pci/drivers/{name}/{address}")
        group_link = f"{folder}/iommu_group"
        if os.path.islink(group_link):
            group = os.path.realpath(group_link)
            _unlink(f"{group}/devices/{address}")
            if not os.listdir(f"{group}/devices"):
                shutil.rmtree(group)
                self._groups.discard(int(os.path.basename(group)))
        for net_dir in _netdev_dirs(folder):
            _unlink(f"{self._base}/class/net/{os.path.basename(net_dir)}")
        _unlink(bus_link)
        shutil.rmtree(folder)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _netdev_dirs(folder: str) -> list[str]:
    found: list[str] = []
    for owner in [folder, *(f"{folder}/{n}" for n in os.listdir(folder) if n.startswith("virtio"))]:
        net = f"{owner}/net"
        if os.path.isdir(net):
            found += [f"{net}/{name}" for name in os.listdir(net)]
    return found


def sriov_files(sriov: SriovPlan) -> dict[str, str]:
    return {
        "sriov_totalvfs": f"{sriov.total}\n",
        "sriov_numvfs": f"{sriov.num}\n",
        "sriov_offset": f"{sriov.offset}\n",
        "sriov_stride": f"{sriov.stride}\n",
        "sriov_vf_device": f"{sriov.vf_device:x}\n",
        "sriov_drivers_autoprobe": "1\n",
        "sriov_vf_total_msix": "0\n",
    }


def netdev_files(netdev: NetdevPlan) -> dict[str, str]:
    up = netdev.operstate == "up"
    return {
        "address": f"{netdev.mac}\n",
        "operstate": f"{netdev.operstate}\n",
        "carrier": "1\n" if up else "0\n",
        "speed": f"{netdev.speed if up else -1}\n",
        "duplex": "full\n" if up else "unknown\n",
        "mtu": f"{netdev.mtu}\n",
        "ifindex": f"{netdev.ifindex}\n",
        "type": "1\n",
        "dev_port": "0\n",
        "phys_port_name": f"{netdev.phys_port_name}\n" if netdev.phys_port_name else "",
        "phys_switch_id": f"{netdev.phys_switch_id}\n" if netdev.phys_switch_id else "",
    }


def cpulist(cpus: frozenset[int] | set[int]) -> str:
    """The kernel's list format: ``0-19,40-59``."""
    ordered = sorted(cpus)
    parts: list[str] = []
    start = prev = None
    for cpu in ordered:
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = cpu
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def cpumask(cpus: frozenset[int] | set[int], nbits: int) -> str:
    """The kernel's ``%*pb`` mask: 32-bit hex words, most significant first, comma-separated."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    words = max(1, (nbits + 31) // 32)
    chunks = [f"{(value >> (32 * i)) & 0xFFFFFFFF:08x}" for i in reversed(range(words))]
    head_bits = nbits % 32 or 32
    chunks[0] = chunks[0][-((head_bits + 3) // 4) :]
    return ",".join(chunks)
