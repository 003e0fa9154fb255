"""PCI class codes: the 24-bit ``class`` attribute decoded into names and a coarse kind.

The names follow the PCI-SIG class list as pci.ids spells it, built in so that a host without
the pci.ids database still says "Ethernet controller" rather than ``0x020000``. The kind is
what the rest of pcifleet groups by (NICs, GPUs, accelerators, NVMe).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from pcifleet.domain.errors import SysfsError


class DeviceKind(enum.StrEnum):
    NETWORK = "network"
    DISPLAY = "display"
    ACCELERATOR = "accelerator"
    NVME = "nvme"
    STORAGE = "storage"
    ENCRYPTION = "encryption"
    BRIDGE = "bridge"
    OTHER = "other"


_BASE: Final[dict[int, str]] = {
    0x00: "Unclassified device",
    0x01: "Mass storage controller",
    0x02: "Network controller",
    0x03: "Display controller",
    0x04: "Multimedia controller",
    0x05: "Memory controller",
    0x06: "Bridge",
    0x07: "Communication controller",
    0x08: "Generic system peripheral",
    0x09: "Input device controller",
    0x0A: "Docking station",
    0x0B: "Processor",
    0x0C: "Serial bus controller",
    0x0D: "Wireless controller",
    0x0E: "Intelligent controller",
    0x0F: "Satellite communications controller",
    0x10: "Encryption controller",
    0x11: "Signal processing controller",
    0x12: "Processing accelerator",
    0x13: "Non-Essential Instrumentation",
    0x40: "Coprocessor",
    0xFF: "Unassigned class",
}

#: (base, sub) -> name, for the subclasses pcifleet users meet on virtualization hosts
_SUB: Final[dict[tuple[int, int], str]] = {
    (0x01, 0x00): "SCSI storage controller",
    (0x01, 0x01): "IDE interface",
    (0x01, 0x04): "RAID bus controller",
    (0x01, 0x06): "SATA controller",
    (0x01, 0x07): "Serial Attached SCSI controller",
    (0x01, 0x08): "Non-Volatile memory controller",
    (0x02, 0x00): "Ethernet controller",
    (0x02, 0x07): "Infiniband controller",
    (0x02, 0x08): "Fabric controller",
    (0x03, 0x00): "VGA compatible controller",
    (0x03, 0x01): "XGA compatible controller",
    (0x03, 0x02): "3D controller",
    (0x03, 0x80): "Display controller",
    (0x04, 0x03): "Audio device",
    (0x05, 0x02): "CXL",
    (0x06, 0x00): "Host bridge",
    (0x06, 0x01): "ISA bridge",
    (0x06, 0x04): "PCI bridge",
    (0x07, 0x00): "Serial controller",
    (0x08, 0x06): "IOMMU",
    (0x0C, 0x03): "USB controller",
    (0x0C, 0x04): "Fibre Channel",
    (0x0C, 0x05): "SMBus",
    (0x0C, 0x06): "InfiniBand",
    (0x10, 0x00): "Network and computing encryption device",
    (0x12, 0x00): "Processing accelerator",
    (0x12, 0x01): "SDXI controller",
}

_KIND: Final[dict[int, DeviceKind]] = {
    0x02: DeviceKind.NETWORK,
    0x03: DeviceKind.DISPLAY,
    0x06: DeviceKind.BRIDGE,
    0x0B: DeviceKind.ACCELERATOR,
    0x10: DeviceKind.ENCRYPTION,
    0x11: DeviceKind.ACCELERATOR,
    0x12: DeviceKind.ACCELERATOR,
    0x40: DeviceKind.ACCELERATOR,
}

_NVME_SUB: Final = 0x08
_NVME_PROG_IF: Final = 0x02


@dataclass(frozen=True, slots=True)
class PciClass:
    """A 24-bit class code: base class, subclass, programming interface."""

    code: int

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFFFFFF:
            raise SysfsError(
                f"class code {self.code:#x} is not 24 bits", field="class", rule="range"
            )

    @classmethod
    def parse(cls, text: str) -> PciClass:
        """``0x010802`` (sysfs) or ``010802``."""
        try:
            return cls(int(text, 16))
        except ValueError:
            raise SysfsError(
                f"class {text!r} is not a hex number", field="class", rule="hex"
            ) from None

    @property
    def base(self) -> int:
        return self.code >> 16

    @property
    def sub(self) -> int:
        return (self.code >> 8) & 0xFF

    @property
    def prog_if(self) -> int:
        return self.code & 0xFF

    @property
    def hex(self) -> str:
        """Six lower-case hex digits, as :attr:`pcifleet.domain.device.Device.class_code`."""
        return f"{self.code:06x}"

    @property
    def is_nvme(self) -> bool:
        return self.base == 0x01 and self.sub == _NVME_SUB and self.prog_if == _NVME_PROG_IF

    @property
    def kind(self) -> DeviceKind:
        if self.is_nvme:
            return DeviceKind.NVME
        if self.base == 0x01:
            return DeviceKind.STORAGE
        return _KIND.get(self.base, DeviceKind.OTHER)

    @property
    def name(self) -> str:
        """The most specific name known: ``Ethernet controller``, ``3D controller``, ..."""
        sub_name = _SUB.get((self.base, self.sub))
        if sub_name is not None:
            return f"{sub_name} (NVMe)" if self.is_nvme else sub_name
        base_name = _BASE.get(self.base)
        if base_name is not None:
            return base_name
        return f"Unknown class {self.base:02x}{self.sub:02x}"

    def __str__(self) -> str:
        return self.name
