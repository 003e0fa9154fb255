"""The host agent's loop against the real controller app in-process, on a simulated sysfs tree.

Only the OS boundary is faked (the sysfs tree and FakeKernel's writes to it); the controller,
the client, discovery and qualification are the real ones.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from pcifleet.client import PcifleetClient
from pcifleet.control.api.app import create_app
from pcifleet.control.api.schemas.agent import DesiredDeviceOut, DesiredInstanceOut
from pcifleet.control.api.schemas.flavors import FlavorCreate
from pcifleet.control.api.schemas.groups import GroupCreate, MatchIn
from pcifleet.control.container import Services, build_services
from pcifleet.control.services.principal import Role
from pcifleet.control.settings import settings_from_env
from pcifleet.domain.errors import Forbidden
from pcifleet.domain.spec import parse_spec_list
from pcifleet.host.agent import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    Agent,
    AgentConfig,
    Plugged,
    RecordingApplier,
    inventory_of,
    reconcile,
)
from pcifleet.host.qualify import qualify
from pcifleet.host.rescan import Rescanner
from pcifleet.host.sysfs import SysfsReader
from pcifleet.sim.kernel import FakeKernel
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree

HOST = "q35-numa-nvme-sriov"
PF = "0000:41:00.0"
SPECS = parse_spec_list(['{"vendor_id": "1b36", "product_id": "0010"}'])


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(settings_from_env({}, data_dir=tmp_path / "db"), migrate_schema=True)
    yield built
    built.close()


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    build_tree(load_shipped(HOST), tmp_path / "host")
    return tmp_path / "host"


def token(services: Services, role: Role, **scope: str) -> str:
    return services.tokens.create(role, **scope)[1]


@pytest.fixture
def admin(app: FastAPI, services: Services) -> Iterator[PcifleetClient]:
    with PcifleetClient.in_process(app, token(services, Role.ADMIN)) as client:
        yield client


def make_agent(
    app: FastAPI, services: Services, root: Path, applier: RecordingApplier | None = None
) -> Agent:
    client = PcifleetClient.in_process(app, token(services, Role.AGENT, host=HOST))
    config = AgentConfig(host=HOST, specs=SPECS, interval=0.01)
    return Agent(client, Rescanner(SysfsReader(root), pci_ids=False), config, applier)


def vf_count(admin: PcifleetClient) -> int:
    return sum(d.parent == PF for d in admin.show_host(HOST).devices)


def test_first_cycle_registers_and_reports_then_only_heartbeats(
    app: FastAPI, services: Services, root: Path, admin: PcifleetClient
) -> None:
    agent = make_agent(app, services, root)
    first = agent.cycle()
    assert (first.ok, first.reported, first.heartbeat) == (True, True, False)
    host = admin.show_host(HOST)
    assert len(host.devices) == 2 + 4 + 8
    assert vf_count(admin) == 8
    generation = host.inventory_generation
    beats = [agent.cycle() for _ in range(3)]
    assert [(b.reported, b.heartbeat) for b in beats] == [(False, True)] * 3
    after = admin.show_host(HOST)
    assert after.inventory_generation == generation
    assert after.last_heartbeat is not None and host.last_heartbeat is not None
    assert after.last_heartbeat >= host.last_heartbeat


def test_vf_count_change_is_reported_as_a_new_inventory(
    app: FastAPI, services: Services, root: Path, admin: PcifleetClient
) -> None:
    agent = make_agent(app, services, root)
    agent.cycle()
    numvfs = (root / "sys/bus/pci/devices" / PF).resolve() / "sriov_numvfs"
    with FakeKernel(root) as kernel:
        kernel.write(numvfs, "0")
        kernel.write(numvfs, "3")
    changed = agent.cycle()
    assert (changed.ok, changed.reported) == (True, True)
    assert vf_count(admin) == 3
    assert agent.cycle().reported is False


def test_the_report_body_is_the_qualified_scan(root: Path) -> None:
    qualified = qualify(Rescanner(SysfsReader(root), pci_ids=False).scan(), SPECS)
    body = inventory_of(qualified, 7)
    assert body.generation == 7
    assert {d.dev_type for d in body.devices} == {"type-PF", "type-VF"}
    assert [c.id for c in body.cells] == [0, 1]


def test_a_stale_generation_is_reread_and_the_report_retried(
    app: FastAPI, services: Services, root: Path, admin: PcifleetClient
) -> None:
    agent = make_agent(app, services, root)
    agent.cycle()
    assert agent.generation is not None
    stale = agent.generation
    qualified = qualify(Rescanner(SysfsReader(root), pci_ids=False).scan(), SPECS)
    body = inventory_of(qualified, stale)
    other = body.model_copy(update={"devices": body.devices[:-1]})
    assert admin.report_inventory(HOST, other).changed  # another writer wins the generation
    numvfs = (root / "sys/bus/pci/devices" / PF).resolve() / "sriov_numvfs"
    with FakeKernel(root) as kernel:
        kernel.write(numvfs, "0")
        kernel.write(numvfs, "5")
    result = agent.cycle()
    assert (result.ok, result.reported) == (True, True)
    assert agent.generation > stale + 1
    assert vf_count(admin) == 5


def test_a_failed_scan_is_logged_and_retried(
    app: FastAPI, services: Services, tmp_path: Path, admin: PcifleetClient
) -> None:
    root = tmp_path / "late"  # sysfs not there yet: the scan finds nothing
    agent = make_agent(app, services, root)
    failed = agent.cycle()
    assert (failed.ok, failed.reported) == (False, False)
    assert admin.show_host(HOST).devices == []
    build_tree(load_shipped(HOST), root)
    retried = agent.cycle()
    assert (retried.ok, retried.reported) == (True, True)
    assert len(admin.show_host(HOST).devices) == 14


@pytest.mark.parametrize("scope", ["wrong-token", "other-host"])
def test_a_refused_token_stops_the_agent_with_exit_4(
    app: FastAPI, services: Services, root: Path, scope: str
) -> None:
    secret = "not-a-token" if scope == "wrong-token" else token(services, Role.AGENT, host="b")
    client = PcifleetClient.in_process(app, secret)
    agent = Agent(client, Rescanner(SysfsReader(root)), AgentConfig(HOST, SPECS, 0.01))
    assert agent.run(threading.Event()) == EXIT_REFUSED


def test_an_agent_token_cannot_report_another_host(
    app: FastAPI, services: Services, root: Path
) -> None:
    qualified = qualify(Rescanner(SysfsReader(root), pci_ids=False).scan(), SPECS)
    with PcifleetClient.in_process(app, token(services, Role.AGENT, host="a")) as agent_a:
        agent_a.register_host("a")
        with pytest.raises(Forbidden):
            agent_a.register_host("b")
        with pytest.raises(Forbidden):
            agent_a.report_inventory("b", inventory_of(qualified, 0))
        with pytest.raises(Forbidden):
            agent_a.desired_state("b")


def test_run_once_and_run_until_stopped(app: FastAPI, services: Services, root: Path) -> None:
    assert make_agent(app, services, root).run(threading.Event(), once=True) == EXIT_OK
    missing = make_agent(app, services, root / "nothing")
    assert missing.run(threading.Event(), once=True) == EXIT_FAILED
    stop = threading.Event()
    agent = make_agent(app, services, root)
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    assert agent.run(stop) == EXIT_OK
    timer.join()
    assert agent.cycles >= 2


def boot_one(admin: PcifleetClient) -> str:
    admin.create_group(
        GroupCreate(name="nvme-vf", device_type="type-VF", match=[MatchIn(vendor_id="1b36")])
    )
    admin.create_flavor(
        FlavorCreate(
            name="small", vcpus=1, memory_mb=64, extra_specs={"pci_passthrough:alias": "nvme-vf:2"}
        )
    )
    booted = admin.boot("vm1", "small")
    assert booted.state == "active", booted.fault
    return booted.id


def test_desired_state_is_applied_once_and_survives_a_restart(
    app: FastAPI, services: Services, root: Path, admin: PcifleetClient
) -> None:
    make_agent(app, services, root).cycle()
    instance = boot_one(admin)
    applier = RecordingApplier()
    agent = make_agent(app, services, root, applier)
    assert agent.cycle().reconciled.plugged == (instance,)
    assert len(applier.plugged[instance].devices) == 2
    assert agent.cycle().reconciled.plugged == ()  # the same state twice: nothing to do
    # a restart: a new agent process finds what the host has and plugs nothing twice
    restarted = make_agent(app, services, root, applier)
    assert restarted.cycle().reconciled.plugged == ()
    admin.delete_instance(instance)
    assert restarted.cycle().reconciled.unplugged == (instance,)
    assert applier.calls == [("plug", instance), ("unplug", instance)]


def _desired(instance: str, *addresses: str) -> DesiredInstanceOut:
    devices = [DesiredDeviceOut(address=a, request_id="r", requester="f") for a in addresses]
    return DesiredInstanceOut(id=instance, name=instance, state="active", devices=devices)


@pytest.mark.parametrize(
    ("found", "desired", "plugged", "unplugged"),
    [
        ({}, [_desired("a", "0000:01:00.1")], ("a",), ()),
        ({"a": ("0000:01:00.1",)}, [_desired("a", "0000:01:00.1")], (), ()),
        ({"a": ("0000:01:00.1",)}, [], (), ("a",)),
        ({"a": ("0000:01:00.1",)}, [_desired("a", "0000:01:00.2")], ("a",), ("a",)),
        ({"a": (), "b": ()}, [_desired("b"), _desired("c")], ("c",), ("a",)),
    ],
)
def test_reconcile_plugs_missing_and_unplugs_unwanted(
    found: dict[str, tuple[str, ...]],
    desired: list[DesiredInstanceOut],
    plugged: tuple[str, ...],
    unplugged: tuple[str, ...],
) -> None:
    applier = RecordingApplier({k: Plugged(k, k, v) for k, v in found.items()})
    done = reconcile(applier, desired)
    assert (done.plugged, done.unplugged) == (plugged, unplugged)
    assert sorted(applier.plugged) == sorted(d.id for d in desired)
