"""The full libvirt domain of an instance, with its platform tuning.

The guest NUMA topology mirrors the scheduler's placement, and every tuning element refers to
it, so the guest's view and the host binding cannot drift apart:

- ``<cpu><numa><cell id cpus memory/>``: guest node i holds consecutive vCPUs and its memory;
- ``<numatune>``: all guest memory strictly on the chosen host cells (``<memory>``) and each
  guest node on its own host cell (``<memnode>``), so a device's NUMA affinity holds inside
  the guest too;
- ``<cputune>``: for the dedicated CPU policy, vCPU i on its own host CPU (``<vcpupin>``) and
  the emulator threads on the same set (``<emulatorpin>``), as Nova does without
  ``hw:emulator_threads_policy``;
- ``<memoryBacking><hugepages><page size nodeset/>``: one ``page`` per page size naming the
  guest nodes backed by it; vhost-user ports also need shared guest memory;
- the virtual IOMMU (``<iommu model='intel'>`` with interrupt remapping and caching mode for
  VFIO devices) needs the split I/O APIC, ``<features><ioapic driver='qemu'/>``.
"""

from __future__ import annotations

from collections import defaultdict

from lxml import etree

from pcifleet.domain.vnic import PlugKind
from pcifleet.host.libvirt.cpuset import format_cpuset
from pcifleet.host.libvirt.devices import Element, render_device
from pcifleet.host.libvirt.model import DomainSpec, GuestDisk

_KIB_PER_MIB = 1024


def _sub(parent: Element, tag: str, text: str | None = None, **attrs: str) -> Element:
    element = etree.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def render_domain(spec: DomainSpec) -> Element:
    """The ``<domain>`` element of an instance (serialize it with :func:`to_string`)."""
    root = etree.Element("domain", type=spec.virt_type.value)
    _sub(root, "name", spec.name)
    _sub(root, "uuid", str(spec.uuid))
    _sub(root, "memory", str(spec.memory_mib * _KIB_PER_MIB), unit="KiB")
    _memory_backing(root, spec)
    _sub(root, "vcpu", str(spec.vcpus), placement="static")
    _cputune(root, spec)
    _numatune(root, spec)
    os = _sub(root, "os")
    _sub(os, "type", "hvm", arch=spec.arch, machine=spec.machine)
    _features(root, spec)
    _cpu(root, spec)
    _devices(root, spec)
    return root


def to_string(element: Element) -> str:
    """Indented XML text of a domain or a device fragment."""
    return etree.tostring(element, pretty_print=True, encoding="unicode")


def _page_sizes(spec: DomainSpec) -> dict[int, list[int]]:
    """Huge page size (KiB) -> the guest nodes it backs (empty list: the whole guest)."""
    if spec.hugepage_size_kib is not None:
        return {spec.hugepage_size_kib: []}
    sizes: dict[int, list[int]] = defaultdict(list)
    for cell in spec.cells:
        if cell.hugepage_size_kib is not None:
            sizes[cell.hugepage_size_kib].append(cell.node)
    return dict(sizes)


def _memory_backing(root: Element, spec: DomainSpec) -> None:
    sizes = _page_sizes(spec)
    shared = any(p.plug is PlugKind.VHOSTUSER for p in spec.ports)
    if not sizes and not shared:
        return
    backing = _sub(root, "memoryBacking")
    if sizes:
        hugepages = _sub(backing, "hugepages")
        for size, nodes in sorted(sizes.items()):
            page = _sub(hugepages, "page", size=str(size), unit="KiB")
            if nodes:
                page.set("nodeset", format_cpuset(nodes))
    if shared:
        _sub(backing, "access", mode="shared")


def _cputune(root: Element, spec: DomainSpec) -> None:
    if not spec.dedicated:
        return
    cputune = _sub(root, "cputune")
    for cell in spec.cells:
        for vcpu, host_cpu in zip(spec.vcpu_ids(cell), sorted(cell.pinned_cpus), strict=True):
            _sub(cputune, "vcpupin", vcpu=str(vcpu), cpuset=str(host_cpu))
    every = (cpu for cell in spec.cells for cpu in cell.pinned_cpus)
    _sub(cputune, "emulatorpin", cpuset=format_cpuset(every))


def _numatune(root: Element, spec: DomainSpec) -> None:
    if not spec.cells:
        return
    numatune = _sub(root, "numatune")
    host_cells = format_cpuset(c.host_cell for c in spec.cells)
    _sub(numatune, "memory", mode="strict", nodeset=host_cells)
    for cell in spec.cells:
        _sub(numatune, "memnode", cellid=str(cell.node), mode="strict", nodeset=str(cell.host_cell))


def _features(root: Element, spec: DomainSpec) -> None:
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.viommu:
        _sub(features, "ioapic", driver="qemu")


def _cpu(root: Element, spec: DomainSpec) -> None:
    if spec.cpu_mode is None and not spec.cells:
        return
    cpu = _sub(root, "cpu")
    if spec.cpu_mode is not None:
        cpu.set("mode", spec.cpu_mode.value)
    if not spec.cells:
        return
    numa = _sub(cpu, "numa")
    for cell in spec.cells:
        _sub(
            numa,
            "cell",
            id=str(cell.node),
            cpus=format_cpuset(spec.vcpu_ids(cell)),
            memory=str(cell.memory_mib * _KIB_PER_MIB),
            unit="KiB",
        )


def _disk(parent: Element, disk: GuestDisk) -> None:
    element = _sub(parent, "disk", type="file", device="disk")
    _sub(element, "driver", name="qemu", type=disk.format.value)
    _sub(element, "source", file=disk.path)
    _sub(element, "target", dev=disk.target, bus="virtio")


def _devices(root: Element, spec: DomainSpec) -> None:
    devices = _sub(root, "devices")
    if spec.disk is not None:
        _disk(devices, spec.disk)
    for device in spec.devices:
        devices.append(render_device(device))
    for port in spec.ports:
        devices.append(render_device(port))
    if spec.viommu:
        iommu = _sub(devices, "iommu", model="intel")
        _sub(iommu, "driver", intremap="on", caching_mode="on")
