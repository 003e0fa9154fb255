"""The workload loader on the shipped ``nova-100`` workload, and its refusals of bad files."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidWorkload
from pcifleet.domain.request import DeviceMatch, NumaPolicy, RequesterKind
from pcifleet.domain.vnic import VnicType
from pcifleet.sim.workload import (
    DECISIONS_FILE,
    FLEET_FILE,
    REQUESTS_FILE,
    Workload,
    flavor_names,
    load_decisions,
    load_workload,
)

WORKLOADS = Path(
    os.environ.get(
        "PCIFLEET_WORKLOADS",
        str(Path(__file__).resolve().parents[3] / "shared" / "workloads"),
    )
)
NOVA_100 = WORKLOADS / "nova-100"

pytestmark = pytest.mark.skipif(not NOVA_100.is_dir(), reason=f"workloads not found at {WORKLOADS}")


@pytest.fixture(scope="module")
def workload() -> Workload:
    return load_workload(NOVA_100)


def test_fleet_template_is_qualified_by_the_workloads_device_spec(workload: Workload) -> None:
    template = workload.fleet.template
    assert len(workload.fleet.hosts) == 100
    assert [h.index for h in workload.fleet.hosts] == list(range(100))
    assert len(template.reported) == 279
    assert len(template.devices) == 278
    assignable = {d.address for d in template.devices}
    assert PciAddress.parse("0000:3d:00.0") not in assignable  # the QAT PF: no spec covers it
    by_type = Counter((d.vendor_id, d.product_id, d.dev_type) for d in template.devices)
    assert by_type == {
        ("8086", "1572", DeviceType.PF): 4,
        ("8086", "154c", DeviceType.VF): 256,
        ("10de", "2330", DeviceType.PCI): 2,
        ("8086", "37c9", DeviceType.VF): 16,
    }


@pytest.mark.parametrize(
    ("pf", "physnet", "node", "ifname"),
    [
        ("0000:18:00.0", "physnet1", 0, "enp24s0f0"),
        ("0000:1a:00.0", "physnet2", 0, "enp26s0f0"),
        ("0000:86:00.0", "physnet1", 1, "enp134s0f0"),
        ("0000:88:00.0", "physnet2", 1, "enp136s0f0"),
    ],
)
def test_nic_specs_tag_the_pf_and_its_vfs(
    workload: Workload, pf: str, physnet: str, node: int, ifname: str
) -> None:
    parent = PciAddress.parse(pf)
    devices = {d.address: d for d in workload.fleet.template.devices}
    assert devices[parent].tags == {"physical_network": physnet}
    assert devices[parent].netdevs == (ifname,)
    vfs = [d for d in devices.values() if d.parent == parent]
    assert len(vfs) == 64
    assert sorted(vf.vf_index for vf in vfs if vf.vf_index is not None) == list(range(64))
    assert {(vf.tags.get("physical_network"), vf.numa_node) for vf in vfs} == {(physnet, node)}


def test_cells_and_ratios(workload: Workload) -> None:
    template = workload.fleet.template
    assert [(c.id, c.socket, len(c.cpus), c.memory_mb) for c in template.cells] == [
        (0, 0, 32, 262144),
        (1, 1, 32, 262144),
    ]
    assert {p.size_kb for c in template.cells for p in c.hugepages} == {2048, 1048576}
    assert template.cpu_allocation_ratio == 4.0
    assert template.ram_allocation_ratio == 1.0


def test_aliases_become_groups(workload: Workload) -> None:
    groups = {g.name: g for g in workload.fleet.groups}
    assert groups["gpu"].alternatives == (DeviceMatch("10de", "2330", DeviceType.PCI),)
    assert groups["qat"].alternatives == (DeviceMatch("8086", "37c9", DeviceType.VF),)


def test_request_mix_and_order(workload: Workload) -> None:
    requests = workload.requests
    assert [r.index for r in requests] == list(range(500))
    kinds = Counter(r.kind for r in requests)
    assert set(kinds) == {"vf-physnet1", "vf-physnet2-x2", "pf", "gpu", "qat"}
    assert sum(kinds.values()) == 500
    for request in requests:
        assert request.flavor.numa_nodes == 1
        assert request.flavor.pci_numa_policy is request.numa_policy


@pytest.mark.parametrize(
    ("kind", "requesters", "dev_type", "physnet"),
    [
        ("vf-physnet1", (RequesterKind.PORT,), None, "physnet1"),
        ("vf-physnet2-x2", (RequesterKind.PORT, RequesterKind.PORT), None, "physnet2"),
        ("pf", (RequesterKind.PORT,), DeviceType.PF, None),
        ("gpu", (RequesterKind.GROUP,), DeviceType.PCI, None),
        ("qat", (RequesterKind.GROUP,), DeviceType.VF, None),
    ],
)
def test_device_requests_mirror_novas(
    workload: Workload,
    kind: str,
    requesters: tuple[RequesterKind, ...],
    dev_type: DeviceType | None,
    physnet: str | None,
) -> None:
    for request in (r for r in workload.requests if r.kind == kind):
        ours = request.device_requests
        assert tuple(r.requester.kind for r in ours) == requesters
        assert [r.request_id for r in ours] == [n.request_id for n in request.nova_requests]
        for mine in ours:
            (match,) = mine.alternatives
            assert match.dev_type is dev_type
            if physnet is not None:
                assert match.prop("physical_network") == physnet
            if mine.from_port:
                assert match.prop("remote_managed") == "False"
                assert mine.numa_policy is None  # the flavor's policy applies


def test_ports_keep_vnic_type_and_network(workload: Workload) -> None:
    pf_request = next(r for r in workload.requests if r.kind == "pf")
    (port,) = pf_request.ports
    assert port.vnic_type is VnicType.DIRECT_PHYSICAL
    assert port.physical_network in ("physnet1", "physnet2")


def test_instance_request_carries_the_flavor_and_every_device_request(
    workload: Workload,
) -> None:
    boot = next(r for r in workload.requests if r.kind == "vf-physnet2-x2")
    request = boot.instance_request()
    assert (request.vcpus, request.memory_mb) == (boot.flavor.vcpus, boot.flavor.memory_mb)
    assert request.numa_nodes == 1
    assert request.instance_id == boot.instance_id
    assert len(request.device_requests) == 2
    assert request.numa_policy is boot.numa_policy


def test_flavors_get_unique_names_per_distinct_flavor(workload: Workload) -> None:
    flavors = workload.flavors
    assert len({f.name for f in flavors}) == len(flavors)
    assert len(flavors) == len({(f.vcpus, f.memory_mb, f.extra_specs) for f in flavors})
    for request in workload.requests:
        assert request.flavor.name.startswith(request.nova_flavor_name + "-")


@pytest.mark.parametrize(
    ("raws", "expected"),
    [
        ([("a", 1, 1, {})], ["a"]),
        ([("a", 1, 1, {}), ("a", 1, 1, {})], ["a", "a"]),
        ([("a", 1, 1, {}), ("b", 2, 2, {})], ["a", "b"]),
        ([("a", 1, 1, {}), ("a", 2, 1, {})], ["a-", "a-"]),
        ([("a", 1, 1, {"k": "v"}), ("a", 1, 1, {})], ["a-", "a-"]),
    ],
)
def test_flavor_names(
    raws: list[tuple[str, int, int, dict[str, str]]], expected: list[str]
) -> None:
    names = flavor_names(raws)
    got = [names[json.dumps([n, c, m, sorted(s.items())])] for n, c, m, s in raws]
    for name, prefix in zip(got, expected, strict=True):
        if prefix.endswith("-"):
            assert name.startswith(prefix)
            assert len(name) == len(prefix) + 8
        else:
            assert name == prefix
    assert len(set(got)) == len({json.dumps(r[:3]) + json.dumps(r[3]) for r in raws})


def test_decisions_load_in_index_order() -> None:
    decisions = load_decisions(NOVA_100 / DECISIONS_FILE)
    assert [d.index for d in decisions] == list(range(500))
    first = decisions[0]
    assert first.placed
    assert (first.host, first.numa_cell) == (0, 0)
    assert first.devices == (PciAddress.parse("0000:1a:09.6"), PciAddress.parse("0000:1a:09.7"))


# ---------------------------------------------------------------------------------- refusals

Edit = Callable[[dict[str, Any]], None]


def _set(path: tuple[str | int, ...], value: object) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _delete(path: tuple[str | int, ...]) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


@pytest.mark.parametrize(
    ("file", "edit", "field", "words"),
    [
        (FLEET_FILE, _delete(("hosts",)), "hosts", "is required"),
        (FLEET_FILE, _set(("hosts", 3, "index"), "three"), "hosts[3].index", "integer"),
        (
            FLEET_FILE,
            _set(("host_template", "pci_devices", 0, "address"), "0000:zz:00.0"),
            "host_template.pci_devices[0].address",
            "0000:zz:00.0",
        ),
        (
            FLEET_FILE,
            _set(("host_template", "pci_devices", 1, "dev_type"), "type-XX"),
            "host_template.pci_devices[1].dev_type",
            "type-XX",
        ),
        (
            FLEET_FILE,
            _set(("nova_config", "pci", "device_spec", 0, "address"), "0000:18:*.*.*"),
            "nova_config.pci",
            "device_spec",
        ),
        (
            FLEET_FILE,
            _set(("nova_config", "pci", "alias", 0, "device_type"), "type-XX"),
            "nova_config.pci",
            "alias",
        ),
        (
            REQUESTS_FILE,
            _set(("requests", 0, "flavor", "vcpus"), "2"),
            "requests[0].flavor.vcpus",
            "integer",
        ),
        (
            REQUESTS_FILE,
            _set(("requests", 0, "ports", 0, "vnic_type"), "sideways"),
            "requests[0].ports[0].vnic_type",
            "sideways",
        ),
        (
            REQUESTS_FILE,
            _set(("requests", 0, "pci_requests", 0, "spec", 0, "physical_network"), "physnet9"),
            "requests[0].pci_requests[0]",
            "spec",
        ),
        (
            REQUESTS_FILE,
            _set(("requests", 0, "pci_requests", 1, "count"), 2),
            "requests[0].pci_requests[1]",
            "count",
        ),
        (
            REQUESTS_FILE,
            _delete(("requests", 0, "pci_requests", 1)),
            "requests[0]",
            "2 device requests, Nova 1",
        ),
        (
            REQUESTS_FILE,
            _set(("requests", 2, "flavor", "extra_specs", "pci_passthrough:alias"), "tpu:1"),
            "requests[2].flavor",
            "tpu",
        ),
        (
            REQUESTS_FILE,
            _set(("requests", 0, "numa_policy"), "sometimes"),
            "requests[0].numa_policy",
            "sometimes",
        ),
    ],
)
def test_malformed_workloads_name_file_and_field(
    tmp_path: Path, file: str, edit: Edit, field: str, words: str
) -> None:
    for name in (FLEET_FILE, REQUESTS_FILE):
        shutil.copy(NOVA_100 / name, tmp_path / name)
    doc = json.loads((tmp_path / file).read_text())
    edit(doc)
    (tmp_path / file).write_text(json.dumps(doc))
    with pytest.raises(InvalidWorkload) as caught:
        load_workload(tmp_path)
    assert caught.value.fields["file"] == file
    assert caught.value.fields["field"] == field
    assert words in caught.value.message
    assert caught.value.status == 400


def test_missing_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidWorkload, match=re.escape(FLEET_FILE)):
        load_workload(tmp_path)
    (tmp_path / FLEET_FILE).write_text("{nope")
    with pytest.raises(InvalidWorkload, match="not JSON"):
        load_workload(tmp_path)


def test_numa_policy_of_nova_requests_is_checked(tmp_path: Path) -> None:
    for name in (FLEET_FILE, REQUESTS_FILE):
        shutil.copy(NOVA_100 / name, tmp_path / name)
    doc = json.loads((tmp_path / REQUESTS_FILE).read_text())
    first = doc["requests"][0]
    other = next(
        p
        for p in NumaPolicy
        if p.value != first["flavor"]["extra_specs"]["hw:pci_numa_affinity_policy"]
    )
    first["pci_requests"][0]["numa_policy"] = other.value
    (tmp_path / REQUESTS_FILE).write_text(json.dumps(doc))
    with pytest.raises(InvalidWorkload, match="numa_policy"):
        load_workload(tmp_path)
