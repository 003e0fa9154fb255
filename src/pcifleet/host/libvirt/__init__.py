"""libvirt domain XML for pcifleet guests: typed inputs in, lxml elements out.

:mod:`.model` holds the inputs (no controller types), :mod:`.devices` one renderer per device
kind chosen by the vnic table's plug kind, :mod:`.domain` the whole domain with NUMA, pinning,
huge pages and the optional virtual IOMMU.
"""

from pcifleet.host.libvirt.devices import PORT_RENDERERS, port_renderer, render_device
from pcifleet.host.libvirt.domain import render_domain, to_string
from pcifleet.host.libvirt.model import (
    CpuMode,
    DiskFormat,
    DomainSpec,
    GuestCell,
    GuestDevice,
    GuestDisk,
    GuestPort,
    VhostUserMode,
    VirtType,
)

__all__ = [
    "PORT_RENDERERS",
    "CpuMode",
    "DiskFormat",
    "DomainSpec",
    "GuestCell",
    "GuestDevice",
    "GuestDisk",
    "GuestPort",
    "VhostUserMode",
    "VirtType",
    "port_renderer",
    "render_device",
    "render_domain",
    "to_string",
]
