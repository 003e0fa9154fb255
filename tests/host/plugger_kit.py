"""Fixtures of the plugger tests: desired-state ports and instances, and a fake host (the
machine has no SR-IOV NIC and no KVM, so VFs and domains live in fakes of the OS boundary)."""

from __future__ import annotations

import uuid

from pcifleet.control.api.schemas.agent import (
    DesiredDeviceOut,
    DesiredInstanceOut,
    DesiredPortOut,
)
from pcifleet.host.hypervisor import FakeHypervisor
from pcifleet.host.plugger import HostApplier
from pcifleet.host.vf.fake import FakeVfConfigurator
from pcifleet.host.vf.model import VfState
from pcifleet.host.vf.service import VfManager

PF = "ens1f0"
GPU = "0000:81:00.0"


def port(index: int, vnic: str = "direct", **extra: object) -> DesiredPortOut:
    values: dict[str, object] = {
        "id": f"port-{index}",
        "vnic_type": vnic,
        "mac_address": f"fa:16:3e:00:00:{index:02x}",
        "vif_type": "hw_veb",
        "vlan": 1000 + index,
        "vf_address": f"0000:18:02.{index}",
        "vf_index": index,
        "pf_address": "0000:18:00.0",
        "pf_ifname": PF,
        "vf_ifname": f"{PF}v{index}",
        "physical_network": "physnet1",
        "max_tx_rate_mbps": 100,
        "spoofchk": True,
        "trusted": True,
        "link_state": "enable",
    }
    values.update(extra)
    return DesiredPortOut.model_validate(values)


def port_device(p: DesiredPortOut) -> DesiredDeviceOut:
    assert p.vf_address is not None
    return DesiredDeviceOut(
        address=p.vf_address,
        request_id=f"r-{p.id}",
        requester=p.id,
        requester_kind="port",
        dev_type="type-VF",
    )


def instance(
    *ports: DesiredPortOut, gpu: bool = True, instance_id: str | None = None
) -> DesiredInstanceOut:
    devices = [port_device(p) for p in ports]
    if gpu:
        devices.insert(
            0, DesiredDeviceOut(address=GPU, request_id="r0", requester="gpu", managed=False)
        )
    return DesiredInstanceOut(
        id=instance_id or str(uuid.uuid4()),
        name="vnf-1",
        state="active",
        devices=devices,
        vcpus=2,
        memory_mb=1024,
        ports=list(ports),
    )


class Host:
    """A fake host: 8 VFs on one PF, an empty hypervisor, and an applier over them."""

    def __init__(self) -> None:
        self.vfs = FakeVfConfigurator()
        self.vfs.add_pf(PF, 8)
        self.hypervisor = FakeHypervisor()
        self.manager = VfManager(self.vfs)
        self.applier = HostApplier(self.manager, self.hypervisor)
        self.initial = self.table()

    def table(self) -> list[VfState]:
        return [self.vfs.read(PF, i) for i in range(8)]

    def domains(self) -> list[str]:
        return [d.name for d in self.hypervisor.list_domains()]
