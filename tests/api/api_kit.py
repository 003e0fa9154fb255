"""Helpers of the API tests: role tokens, a small NIC inventory, the fleet record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcifleet.control.services.inventory import InventoryReport
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.tags import Tags

BASE_URL = "http://pcifleet.test"
PF = "0000:3b:00.0"
VFS = ("0000:3b:02.0", "0000:3b:02.1")


@dataclass(frozen=True)
class Tokens:
    admin: str
    alice: str
    bob: str
    agent: str

    def of(self, role: str) -> str:
        value: str = getattr(self, role)
        return value


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def device(address: str, dev_type: DeviceType, **extra: Any) -> Device:
    fields: dict[str, Any] = {
        "vendor_id": "8086",
        "product_id": "1572" if dev_type is DeviceType.PF else "154c",
        "dev_type": dev_type,
        "numa_node": 0,
        "tags": Tags({"physical_network": "physnet1"}),
    }
    return Device(PciAddress.parse(address), **(fields | extra))


def nic_inventory() -> InventoryReport:
    pf = device(PF, DeviceType.PF)
    vfs = [device(a, DeviceType.VF, parent=pf.address, vf_index=i) for i, a in enumerate(VFS)]
    cell = NumaCell(0, 0, frozenset(range(8)), 16384)
    return InventoryReport([pf, *vfs], [cell])


@dataclass(frozen=True)
class Fleet:
    host_id: str
    device_ids: dict[str, str]
