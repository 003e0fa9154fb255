"""Helpers of the scheduler tests: a small fleet, registered through the real inventory path.

Each host has two NUMA cells; a NIC on each cell (one PF with VFs; the PF on node 0 serves
physnet1, the one on node 1 physnet2) and one GPU on node 1. Groups: ``gpu`` (public) and
``secret-gpu`` (private to project ``p2``); flavors: ``small`` (no devices), ``gpu``,
``two-vf`` (two VFs of physnet2 via a group, required NUMA policy), ``pf`` (a whole PF).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import InstanceRow
from pcifleet.control.scheduler.hostload import HostHead
from pcifleet.control.scheduler.outcomes import Summary
from pcifleet.control.scheduler.scheduler import Scheduler, SchedulerOptions
from pcifleet.control.services.flavors import FlavorService, parse_flavor
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.instances import InstanceService
from pcifleet.control.services.inventory import InventoryReport, InventoryService
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.placement import InstanceRequest, Placement
from pcifleet.domain.request import DeviceMatch, DeviceRequest, Requester, RequesterKind
from pcifleet.domain.tags import Tags

NICS = (("0000:18:00.0", "physnet1", 0), ("0000:86:00.0", "physnet2", 1))
GPU = "0000:d8:00.0"
DEFAULT_OPTIONS = SchedulerOptions()


def host_devices(vfs: int = 4) -> list[Device]:
    devices: list[Device] = []
    for address, physnet, node in NICS:
        pf = PciAddress.parse(address)
        tags = Tags({"physical_network": physnet})
        devices.append(Device(pf, "8086", "1572", DeviceType.PF, "020000", node, tags=tags))
        devices.extend(
            Device(
                pf.offset(16 + i),
                "8086",
                "154c",
                DeviceType.VF,
                "020000",
                node,
                pf,
                i,
                tags=tags,
            )
            for i in range(vfs)
        )
    devices.append(Device(PciAddress.parse(GPU), "10de", "2330", DeviceType.PCI, "030200", 1))
    return devices


def cells(cpus: int = 8, memory_mb: int = 16384) -> tuple[NumaCell, ...]:
    return tuple(
        NumaCell(i, i, frozenset(range(cpus * i, cpus * i + cpus)), memory_mb) for i in (0, 1)
    )


@dataclass
class Kit:
    sessions: sessionmaker[Session]
    inventory: InventoryService
    groups: GroupService
    flavors: FlavorService
    scheduler: Scheduler
    instances: InstanceService

    def add_host(self, name: str, devices: list[Device] | None = None, **cell_args: int) -> str:
        host = self.inventory.register_host(name)
        report = InventoryReport(
            devices=host_devices() if devices is None else devices, cells=cells(**cell_args)
        )
        self.inventory.report(name, host.inventory_generation, report)
        return host.id

    def flavor(self, name: str, vcpus: int = 2, memory_mb: int = 1024, **specs: str) -> None:
        extra = {key.replace("__", ":"): value for key, value in specs.items()}
        self.flavors.create(LOCAL_ADMIN, parse_flavor(name, vcpus, memory_mb, extra))


def standard_catalogue(kit: Kit) -> None:
    gpu = DeviceMatch.of(vendor_id="10de", product_id="2330")
    kit.groups.create(LOCAL_ADMIN, DeviceGroup("gpu", (gpu,)))
    kit.groups.create(LOCAL_ADMIN, DeviceGroup("secret-gpu", (gpu,), owner="p2"))
    kit.groups.create(
        LOCAL_ADMIN,
        DeviceGroup("vf2", (DeviceMatch.of(physical_network="physnet2"),), DeviceType.VF),
    )
    pf1 = DeviceMatch.of(physical_network="physnet1")
    kit.groups.create(LOCAL_ADMIN, DeviceGroup("pf1", (pf1,), DeviceType.PF))
    kit.flavor("small")
    kit.flavor("gpu", pci_passthrough__alias="gpu:1")
    kit.flavor("secret", pci_passthrough__alias="secret-gpu:1")
    kit.flavor(
        "two-vf",
        pci_passthrough__alias="vf2:2",
        hw__numa_nodes="1",
        hw__pci_numa_affinity_policy="required",
    )
    kit.flavor("pf", pci_passthrough__alias="pf1:1")


KitFactory = Callable[..., Kit]


# --- claim writers for tests that race two schedulers on one host ---------------------


class SlowWriter:
    """Holds its claim (host row locked, uncommitted) for a moment after the CAS."""

    def __init__(self, claimed: threading.Event) -> None:
        self.claimed = claimed

    def check(self, session: Session) -> None:
        return None

    def placed(self, session: Session, host: HostHead, placement: Placement) -> None:
        insert_instance(session, placement)
        self.claimed.set()
        time.sleep(0.4)

    def unplaced(self, session: Session, summary: Summary) -> None:
        raise AssertionError(summary.sentence)


class Writer(SlowWriter):
    def placed(self, session: Session, host: HostHead, placement: Placement) -> None:
        insert_instance(session, placement)


def insert_instance(session: Session, placement: Placement) -> None:
    session.execute(
        insert(InstanceRow).values(id=placement.instance_id, name="vm", project="p", state="active")
    )


def vf_request(instance_id: str) -> InstanceRequest:
    vf = DeviceMatch.of(dev_type=DeviceType.VF, physical_network="physnet1")
    request = DeviceRequest(1, (vf,), Requester(RequesterKind.GROUP, "vf1"), request_id="r")
    return InstanceRequest(1, 256, device_requests=(request,), instance_id=instance_id)
