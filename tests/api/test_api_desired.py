"""``GET /v1/hosts/{host}/desired`` after boots with SR-IOV ports, and the physnet mapping seen
by the scheduler.

The controller runs in-process with its real services (NetworkService, InstanceService); the
host's inventory is what the real agent code reports for the shipped ``compute-x710`` profile
built as a fake sysfs tree, under ``physical_device_mappings = physnet1:ens1f0`` with two VFs
excluded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from pcifleet.client import PcifleetClient
from pcifleet.control.api.app import create_app
from pcifleet.control.api.schemas.flavors import FlavorCreate
from pcifleet.control.api.schemas.instances import NicIn
from pcifleet.control.api.schemas.networks import NetworkCreate, PortCreate, QosIn, SegmentIn
from pcifleet.control.container import Services, build_services
from pcifleet.control.services.principal import Role
from pcifleet.control.settings import settings_from_env
from pcifleet.domain.spec import parse_spec_list
from pcifleet.domain.vnic import VnicType
from pcifleet.host.agent import inventory_of
from pcifleet.host.qualify import qualify
from pcifleet.host.rescan import Rescanner
from pcifleet.host.sysfs import SysfsReader
from pcifleet.host.vf.mapping import AgentMappings
from pcifleet.network.segments import NetworkType
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree

SPECS = parse_spec_list(['{"vendor_id": "8086", "trusted": "true"}'])
MAPPINGS = AgentMappings.parse("physnet1:ens1f0", "ens1f0:0000:11:02.3;0000:11:02.4")
PF0 = "0000:11:00.0"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(settings_from_env({}, data_dir=tmp_path / "db"), migrate_schema=True)
    yield built
    built.close()


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
def host(app: FastAPI, services: Services, tmp_path: Path) -> Iterator[PcifleetClient]:
    """The host's agent client, after reporting the mapped inventory."""
    profile = load_shipped("compute-x710")
    build_tree(profile, tmp_path / "host")
    scan = Rescanner(SysfsReader(tmp_path / "host"), pci_ids=False).scan()
    secret = services.tokens.create(Role.AGENT, host=profile.hostname)[1]
    with PcifleetClient.in_process(app, secret) as agent:
        registered = agent.register_host(profile.hostname)
        body = inventory_of(qualify(scan, SPECS), registered.inventory_generation, MAPPINGS)
        agent.report_inventory(profile.hostname, body)
        yield agent


@pytest.fixture
def admin(app: FastAPI, services: Services) -> Iterator[PcifleetClient]:
    with PcifleetClient.in_process(app, services.tokens.create(Role.ADMIN)[1]) as client:
        client.create_flavor(FlavorCreate(name="small", vcpus=2, memory_mb=1024))
        segment = SegmentIn(
            network_type=NetworkType.VLAN, physical_network="physnet1", segmentation_id=1234
        )
        client.create_network(NetworkCreate(name="sriov", segments=[segment]))
        yield client


def test_desired_state_carries_what_the_agent_needs_to_plug_a_direct_port(
    host: PcifleetClient, admin: PcifleetClient
) -> None:
    port = admin.create_port(
        PortCreate(
            network="sriov",
            vnic_type=VnicType.DIRECT,
            trusted=True,
            qos=QosIn(max_kbps=100_000, min_kbps=10_000),
        )
    )
    vm = admin.boot("vnf-1", "small", nics=[NicIn(port=port.id)])
    assert vm.state == "active"
    hostname = vm.host
    assert hostname is not None
    desired = host.desired_state(hostname)
    (instance,) = desired.instances
    assert (instance.id, instance.vcpus, instance.memory_mb) == (vm.id, 2, 1024)
    (out,) = instance.ports
    assert (out.id, out.vnic_type, out.mac_address) == (port.id, "direct", port.mac_address)
    assert (out.vlan, out.physical_network, out.vif_type) == (1234, "physnet1", "hw_veb")
    assert out.pf_address == PF0 and out.pf_ifname == "ens1f0"
    assert out.vf_address is not None and out.vf_address.startswith("0000:11:02.")
    assert out.vf_ifname == f"ens1f0v{out.vf_index}"
    assert (out.max_tx_rate_mbps, out.min_tx_rate_mbps) == (100, 10)
    assert (out.spoofchk, out.trusted, out.link_state) == (True, True, "enable")
    (device,) = instance.devices
    assert (device.address, device.requester_kind, device.requester) == (
        out.vf_address,
        "port",
        port.id,
    )
    bound = admin.show_port(port.id)
    assert bound.binding is not None
    assert bound.binding.profile["pf_mac_address"] == "3c:fd:fe:a3:9a:2b"
    admin.delete_instance(vm.id)
    assert host.desired_state(hostname).instances == []


def test_the_scheduler_offers_only_vfs_of_pfs_mapped_to_the_physnet(
    host: PcifleetClient, admin: PcifleetClient
) -> None:
    placed = []
    for index in range(6):  # ens1f0's 8 VFs minus the 2 excluded
        vm = admin.boot(f"vm-{index}", "small", nics=[NicIn(net="sriov", vnic_type="direct")])
        assert vm.state == "active", vm.fault
        placed.append(vm.requests[0].devices[0])
    assert all(a.startswith("0000:11:02.") for a in placed)
    assert not {"0000:11:02.3", "0000:11:02.4"} & set(placed)
    # ens1f1 still has 8 free VFs, but it serves no physical network
    refused = admin.boot("vm-7", "small", nics=[NicIn(net="sriov", vnic_type="direct")])
    assert refused.state == "error"
