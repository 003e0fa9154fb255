"""The facts of a domain XML that must survive libvirt's parser, read the same way from
pcifleet's rendering and from libvirt's ``XMLDesc()`` (libvirt reorders elements, switches to
single quotes and adds defaults, so texts cannot be compared directly)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from pcifleet.domain.address import PciAddress

Element = etree._Element
#: the conftest fixtures' signatures: schema validation, and define + ``XMLDesc()``
ValidateXml = Callable[[str], None]
DefineReadback = Callable[[str], str]


@dataclass(frozen=True)
class InterfaceFacts:
    type: str
    managed: str | None
    mac: str | None
    source: tuple[tuple[str, str], ...]
    address: str | None
    vlan: str | None
    virtualport: tuple[tuple[str, str], ...]
    model: str | None
    driver: str | None


@dataclass(frozen=True)
class DomainFacts:
    virt_type: str
    name: str
    uuid: str
    memory_kib: str
    vcpus: str
    hostdevs: tuple[tuple[str, str], ...]
    interfaces: tuple[InterfaceFacts, ...]
    cells: tuple[tuple[str, str, str], ...]
    cpu_mode: str | None
    numatune_memory: tuple[str, str] | None
    memnodes: tuple[tuple[str, str, str], ...]
    vcpupins: tuple[tuple[str, str], ...]
    emulatorpin: str | None
    pages: tuple[tuple[str, str | None], ...]
    shared_memory: bool
    iommu: tuple[str, str | None, str | None] | None
    ioapic: str | None
    disk: tuple[str, str] | None


def pci(element: Element | None) -> str | None:
    """``<address domain bus slot function>`` as ``0000:81:10.2``."""
    if element is None:
        return None
    parts = (int(element.get(k, "0"), 16) for k in ("domain", "bus", "slot", "function"))
    return str(PciAddress(*parts))


def _attrs(element: Element | None) -> tuple[tuple[str, str], ...]:
    if element is None:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in element.attrib.items()))


def _get(root: Element, path: str, attr: str) -> str | None:
    found = root.find(path)
    return None if found is None else found.get(attr)


def interface_facts(element: Element) -> InterfaceFacts:
    virtualport = element.find("virtualport")
    params = _attrs(None if virtualport is None else virtualport.find("parameters"))
    vp = (("type", virtualport.get("type", "")), *params) if virtualport is not None else ()
    source = element.find("source")
    return InterfaceFacts(
        type=element.get("type", ""),
        managed=element.get("managed"),
        mac=_get(element, "mac", "address"),
        source=_attrs(source),
        address=pci(element.find("source/address")),
        vlan=_get(element, "vlan/tag", "id"),
        virtualport=vp,
        model=_get(element, "model", "type"),
        driver=_get(element, "driver", "name"),
    )


def _hostdevs(root: Element) -> tuple[tuple[str, str], ...]:
    return tuple(
        (pci(h.find("source/address")) or "", h.get("managed", ""))
        for h in root.iterfind("devices/hostdev")
    )


def _iommu(root: Element) -> tuple[str, str | None, str | None] | None:
    iommu = root.find("devices/iommu")
    if iommu is None:
        return None
    return (
        iommu.get("model", ""),
        _get(iommu, "driver", "intremap"),
        _get(iommu, "driver", "caching_mode"),
    )


def _numatune_memory(root: Element) -> tuple[str, str] | None:
    memory = root.find("numatune/memory")
    if memory is None:
        return None
    return memory.get("mode", ""), memory.get("nodeset", "")


def _disk(root: Element) -> tuple[str, str] | None:
    disk = root.find("devices/disk")
    if disk is None:
        return None
    return _get(disk, "source", "file") or "", _get(disk, "target", "dev") or ""


def facts(text: str) -> DomainFacts:
    root = etree.fromstring(text.encode())
    return DomainFacts(
        virt_type=root.get("type", ""),
        name=root.findtext("name") or "",
        uuid=root.findtext("uuid") or "",
        memory_kib=root.findtext("memory") or "",
        vcpus=root.findtext("vcpu") or "",
        hostdevs=_hostdevs(root),
        interfaces=tuple(interface_facts(i) for i in root.iterfind("devices/interface")),
        cells=tuple(
            (c.get("id", ""), c.get("cpus", ""), c.get("memory", ""))
            for c in root.iterfind("cpu/numa/cell")
        ),
        cpu_mode=_get(root, "cpu", "mode"),
        numatune_memory=_numatune_memory(root),
        memnodes=tuple(
            (m.get("cellid", ""), m.get("mode", ""), m.get("nodeset", ""))
            for m in root.iterfind("numatune/memnode")
        ),
        vcpupins=tuple(
            (p.get("vcpu", ""), p.get("cpuset", "")) for p in root.iterfind("cputune/vcpupin")
        ),
        emulatorpin=_get(root, "cputune/emulatorpin", "cpuset"),
        pages=tuple(
            (p.get("size", ""), p.get("nodeset"))
            for p in root.iterfind("memoryBacking/hugepages/page")
        ),
        shared_memory=_get(root, "memoryBacking/access", "mode") == "shared",
        iommu=_iommu(root),
        ioapic=_get(root, "features/ioapic", "driver"),
        disk=_disk(root),
    )


def without_generated(readback: DomainFacts, rendered: DomainFacts) -> DomainFacts:
    """libvirt invents a MAC for interfaces rendered without one: forget those MACs."""
    interfaces = tuple(
        dataclasses.replace(back, mac=None) if mine.mac is None else back
        for back, mine in zip(readback.interfaces, rendered.interfaces, strict=True)
    )
    return dataclasses.replace(readback, interfaces=interfaces)
