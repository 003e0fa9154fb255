"""Host fit: NUMA policies, filter stages, coupling, packing, resources, apply/release."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.device_fit import TYPE_STAGES, Wants
from pcifleet.domain.errors import AlreadyExists, InvalidTransition, NotFound
from pcifleet.domain.fit import apply, fit, release
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.domain.placement import (
    CpuPolicy,
    FitFailure,
    FitOptions,
    FitStage,
    InstanceRequest,
    Placement,
    VfStrategy,
)
from pcifleet.domain.pool import PoolKey
from pcifleet.domain.request import (
    DeviceMatch,
    DeviceRequest,
    NumaPolicy,
    Requester,
    RequesterKind,
)
from pcifleet.domain.state import HELD, Operation
from pcifleet.domain.tags import Tags

# -- builders ----------------------------------------------------------------------------------


def addr(text: str) -> PciAddress:
    return PciAddress.parse(text)


def nic(
    pf: str,
    node: int | None,
    network: str,
    vfs: int,
    dev_type: DeviceType = DeviceType.VF,
    **tags: str,
) -> list[Device]:
    pf_addr = addr(pf)
    all_tags = Tags({"physical_network": network, **tags})
    devices = [Device(pf_addr, "8086", "1572", DeviceType.PF, numa_node=node, tags=all_tags)]
    for i in range(vfs):
        vf = pf_addr.offset(16 + i)
        devices.append(
            Device(
                vf,
                "8086",
                "154c",
                dev_type,
                numa_node=node,
                parent=pf_addr,
                vf_index=i,
                tags=all_tags,
            )
        )
    return devices


def gpu(address: str, node: int | None) -> Device:
    return Device(addr(address), "10de", "2330", DeviceType.PCI, numa_node=node)


def cell(node: int, cpus: int = 8, memory: int = 16384, socket: int | None = None) -> NumaCell:
    hugepages = (HugePages(2048, 512, 512),)
    first = node * 100
    socket = node if socket is None else socket
    return NumaCell(node, socket, frozenset(range(first, first + cpus)), memory, hugepages)


def host(devices: list[Device], cells: list[NumaCell] | None = None) -> HostState:
    return HostState.build("h1", cells or [cell(0), cell(1)], devices)


def port(network: str, name: str = "p1", count: int = 1, **props: str) -> DeviceRequest:
    match = DeviceMatch.of(physical_network=network, remote_managed="False", **props)
    return DeviceRequest(count, (match,), Requester(RequesterKind.PORT, name))


def group(name: str, *matches: DeviceMatch, count: int = 1) -> DeviceRequest:
    return DeviceRequest(count, matches, Requester(RequesterKind.GROUP, name))


GPU = DeviceMatch.of("10de", "2330", DeviceType.PCI)
PF_MATCH = DeviceMatch.of(dev_type=DeviceType.PF, physical_network="physnet1")


def instance(*requests: DeviceRequest, **fields: object) -> InstanceRequest:
    base = InstanceRequest(2, 1024, 1, device_requests=requests, instance_id="vm1")
    return replace(base, **fields)  # type: ignore[arg-type]


def placed(result: object) -> Placement:
    assert isinstance(result, Placement), result
    return result


def failed(result: object) -> FitFailure:
    assert isinstance(result, FitFailure), result
    return result


# -- NUMA policies -----------------------------------------------------------------------------

# physnet2 lives on node 1 only; cell 1 is too small for the guest, so the guest is on cell 0
SPLIT = [*nic("0000:18:00.0", 0, "physnet1", 3), *nic("0000:88:00.0", 1, "physnet2", 3)]
SMALL_CELL_1 = [cell(0), cell(1, cpus=1)]


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [
        (NumaPolicy.REQUIRED, "required NUMA policy: 0 of 4 devices on physnet2 (3 VFs, 1 PF) "
         "are on node 0, 1 needed"),
        (NumaPolicy.LEGACY, "legacy NUMA policy: 0 of 4 devices on physnet2 (3 VFs, 1 PF) "
         "are on node 0 or have no NUMA affinity, 1 needed"),
        (NumaPolicy.PREFERRED, "0000:88:02.0"),
        (NumaPolicy.SOCKET, "socket NUMA policy: 0 of 4 devices on physnet2 (3 VFs, 1 PF) "
         "are on the sockets of node 0, 1 needed"),
    ],
)  # fmt: skip
def test_numa_policy_with_devices_on_the_other_node(policy: NumaPolicy, outcome: str) -> None:
    result = fit(host(SPLIT, SMALL_CELL_1), instance(port("physnet2"), numa_policy=policy))
    if isinstance(result, Placement):
        assert result.host_cells == (0,)
        assert [str(a) for a in result.all_devices] == [outcome]
    else:
        assert result.stage is FitStage.NUMA
        assert result.message == outcome
        assert result.request_index == 0
        assert result.requester == Requester(RequesterKind.PORT, "p1")
        assert [(s.stage, s.before, s.after) for s in result.stages] == [
            (FitStage.SPEC, 8, 4),
            (FitStage.NUMA, 4, 0),
        ]


def test_socket_policy_accepts_devices_on_another_node_of_the_same_socket() -> None:
    cells = [cell(0, socket=0), cell(1, cpus=1, socket=0)]
    result = fit(host(SPLIT, cells), instance(port("physnet2"), numa_policy=NumaPolicy.SOCKET))
    assert placed(result).all_devices == (addr("0000:88:02.0"),)


def test_socket_policy_fails_when_a_socket_is_unknown() -> None:
    cells = [replace(cell(0), socket=None), cell(1, cpus=1)]
    result = fit(host(SPLIT, cells), instance(port("physnet2"), numa_policy=NumaPolicy.SOCKET))
    assert failed(result).stage is FitStage.NUMA


def test_legacy_accepts_devices_without_numa_affinity() -> None:
    devices = nic("0000:88:00.0", None, "physnet2", 2)
    result = fit(host(devices, SMALL_CELL_1), instance(port("physnet2")))
    assert placed(result).all_devices == (addr("0000:88:02.0"),)


def test_request_policy_overrides_the_instance_policy() -> None:
    request = replace(port("physnet2"), numa_policy=NumaPolicy.PREFERRED)
    result = fit(host(SPLIT, SMALL_CELL_1), instance(request, numa_policy=NumaPolicy.REQUIRED))
    assert placed(result).all_devices == (addr("0000:88:02.0"),)


def test_preferred_uses_local_devices_first() -> None:
    devices = [*nic("0000:18:00.0", 0, "physnet2", 2), *nic("0000:88:00.0", 1, "physnet2", 2)]
    cells = [cell(0, cpus=1), cell(1)]
    result = fit(host(devices, cells), instance(port("physnet2"), numa_policy=NumaPolicy.PREFERRED))
    assert placed(result).host_cells == (1,)
    assert placed(result).all_devices == (addr("0000:88:02.0"),)


def test_preferred_sufficiency_ignores_pfs_that_a_later_stage_drops() -> None:
    # node 0 only has a free PF on physnet2 (its VFs are reserved); Nova would pick the
    # "sufficient" node-0 pools, drop the PF and fail; the VFs of node 1 are the answer
    devices = nic("0000:18:00.0", 0, "physnet2", 1) + nic("0000:88:00.0", 1, "physnet2", 1)
    devices[1] = replace(devices[1], state=DeviceState.RESERVED)
    cells = [cell(0), cell(1, cpus=1)]
    result = fit(host(devices, cells), instance(port("physnet2"), numa_policy=NumaPolicy.PREFERRED))
    assert placed(result).all_devices == (addr("0000:88:02.0"),)


def test_no_numa_topology_makes_the_numa_stage_a_no_op() -> None:
    result = fit(
        host(SPLIT, SMALL_CELL_1),
        instance(port("physnet2"), numa_nodes=None, numa_policy=NumaPolicy.REQUIRED),
    )
    p = placed(result)
    assert p.cells == ()
    assert (p.floating_vcpus, p.floating_memory_mb) == (2, 1024)
    assert p.all_devices == (addr("0000:88:02.0"),)


def test_two_node_guest_may_use_devices_of_either_cell_under_required() -> None:
    request = instance(
        port("physnet1", "a"), port("physnet2", "b"), vcpus=4, numa_nodes=2,
        numa_policy=NumaPolicy.REQUIRED,
    )  # fmt: skip
    p = placed(fit(host(SPLIT), request))
    assert sorted(p.host_cells) == [0, 1]
    assert [str(a) for a in p.all_devices] == ["0000:18:02.0", "0000:88:02.0"]


# -- filter stages -----------------------------------------------------------------------------


def test_unrequested_pfs_are_dropped() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 1)
    devices[1] = replace(devices[1], state=DeviceState.RESERVED)
    devices[0] = replace(devices[0], state=DeviceState.AVAILABLE)  # as if the VF were gone
    devices = [devices[0]]
    result = failed(fit(host(devices), instance(port("physnet1"))))
    assert result.stage is FitStage.UNREQUESTED_PF
    assert result.message == (
        "PFs are only given when asked for: 0 of 1 PFs on physnet1 are not PFs, 1 needed"
    )


def test_a_pf_is_given_when_asked_for() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 2)
    p = placed(fit(host(devices), instance(group("pf", PF_MATCH))))
    assert p.all_devices == (addr("0000:18:00.0"),)


def test_unrequested_vdpa_is_dropped() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 2, dev_type=DeviceType.VDPA)
    result = failed(fit(host(devices), instance(port("physnet1"))))
    assert result.stage is FitStage.UNREQUESTED_VDPA
    vdpa = group("v", DeviceMatch.of(dev_type=DeviceType.VDPA, physical_network="physnet1"))
    assert placed(fit(host(devices), instance(vdpa))).all_devices == (addr("0000:18:02.0"),)


def test_unrequested_remote_managed_is_dropped() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 2, remote_managed="true")
    request = group("any", DeviceMatch.of(physical_network="physnet1"))
    result = failed(fit(host(devices), instance(request)))
    assert result.stage is FitStage.UNREQUESTED_REMOTE_MANAGED
    assert "0 of 2 VFs on physnet1 are not remote-managed" in result.message
    smart = group("s", DeviceMatch.of(physical_network="physnet1", remote_managed="true"))
    assert len(placed(fit(host(devices), instance(smart))).all_devices) == 1


def test_spec_failure_names_what_was_asked() -> None:
    result = failed(fit(host(SPLIT), instance(group("gpu", GPU))))
    assert result.stage is FitStage.SPEC
    assert result.message == "spec: 0 of 8 free devices match PCI devices of group gpu, 1 needed"


@pytest.mark.parametrize(
    ("alternatives", "key_value", "keeps"),
    [
        ((("true",), "true", True)),
        ((("true",), "false", False)),
        ((("true",), None, False)),
        ((("false",), "false", True)),
        ((("false",), None, False)),
        # mixed alternatives: no filter
        ((("true", None), None, True)),
        (((None,), "false", True)),
    ],
)
def test_live_migratable_stage(
    alternatives: tuple[str | None, ...], key_value: str | None, keeps: bool
) -> None:
    from pcifleet.domain.device_fit import wants_of

    matches = tuple(
        DeviceMatch.of("8086", **({} if v is None else {"live_migratable": v}))
        for v in alternatives
    )
    tags = {} if key_value is None else {"live_migratable": key_value}
    key = PoolKey("8086", "154c", DeviceType.VF, 0, None, Tags(tags))
    assert wants_of(matches).keeps(FitStage.LIVE_MIGRATABLE, key) is keeps


def test_type_stages_are_in_novas_order() -> None:
    assert TYPE_STAGES == (
        FitStage.UNREQUESTED_PF,
        FitStage.UNREQUESTED_VDPA,
        FitStage.UNREQUESTED_REMOTE_MANAGED,
        FitStage.LIVE_MIGRATABLE,
    )
    assert Wants(False, False, False, None).keeps(FitStage.LIVE_MIGRATABLE, PoolKey.of(SPLIT[1]))


# -- coupling, cumulative requests, packing ----------------------------------------------------


def test_requests_are_cumulative() -> None:
    devices = [gpu("0000:4a:00.0", 0)]
    result = failed(fit(host(devices), instance(group("gpu", GPU), group("gpu", GPU))))
    assert result.request_index == 1
    assert result.message == "spec: 0 of 0 free devices match PCI devices of group gpu, 1 needed"


def test_a_vf_and_its_pf_are_never_chosen_together() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 2)
    vf_then_pf = instance(port("physnet1"), group("pf", PF_MATCH))
    assert failed(fit(host(devices), vf_then_pf)).request_index == 1
    pf_then_vf = instance(group("pf", PF_MATCH), port("physnet1"))
    assert failed(fit(host(devices), pf_then_vf)).request_index == 1


def test_a_pf_request_takes_the_pf_whose_vfs_are_not_chosen() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 2) + nic("0000:19:00.0", 0, "physnet1", 2)
    p = placed(fit(host(devices), instance(port("physnet1"), group("pf", PF_MATCH))))
    assert [str(a) for a in p.all_devices] == ["0000:18:02.0", "0000:19:00.0"]
    p = placed(fit(host(devices), instance(group("pf", PF_MATCH), port("physnet1"))))
    assert [str(a) for a in p.all_devices] == ["0000:18:00.0", "0000:19:02.0"]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [(VfStrategy.PACK, "0000:19:02.1"), (VfStrategy.SPREAD, "0000:18:02.0")],
)
def test_vfs_pack_onto_pfs_in_use(strategy: VfStrategy, expected: str) -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 4) + nic("0000:19:00.0", 0, "physnet1", 4)
    start = HostState.build("h1", [cell(0), cell(1)], devices)
    start = start.transition(addr("0000:19:02.0"), Operation.ALLOCATE, "old")
    p = placed(fit(start, instance(port("physnet1")), FitOptions(vf_strategy=strategy)))
    assert [str(a) for a in p.all_devices] == [expected]


def test_pack_fills_one_pf_before_the_next() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 2) + nic("0000:19:00.0", 0, "physnet1", 2)
    p = placed(fit(host(devices), instance(port("physnet1", count=3))))
    assert [str(a) for a in p.all_devices] == ["0000:18:02.0", "0000:18:02.1", "0000:19:02.0"]


def test_fewest_tags_first_keeps_richer_devices_free() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 2, trusted="true")
    devices += nic("0000:19:00.0", 0, "physnet1", 2)
    p = placed(fit(host(devices), instance(port("physnet1"))))
    assert [str(a) for a in p.all_devices] == ["0000:19:02.0"]
    p = placed(fit(host(devices), instance(port("physnet1", trusted="true"))))
    assert [str(a) for a in p.all_devices] == ["0000:18:02.0"]


def test_cells_with_enough_matching_devices_come_first() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 1) + nic("0000:86:00.0", 1, "physnet1", 3)
    request = instance(port("physnet1", count=2), numa_policy=NumaPolicy.REQUIRED)
    assert placed(fit(host(devices), request)).host_cells == (1,)


def test_guests_without_devices_avoid_device_cells() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 3)
    assert placed(fit(host(devices), instance())).host_cells == (1,)


# -- resources ---------------------------------------------------------------------------------


def test_dedicated_cpus_are_pinned_lowest_first_and_not_reused() -> None:
    h = host([])
    request = instance(vcpus=3, cpu_policy=CpuPolicy.DEDICATED)
    first = placed(fit(h, request))
    assert first.cells[0].pinned_cpus == frozenset({0, 1, 2})
    h = apply(h, first)
    second = placed(fit(h, replace(request, instance_id="vm2")))
    assert second.cells[0].pinned_cpus == frozenset({3, 4, 5})


def test_two_node_guest_splits_cpus_and_memory() -> None:
    p = placed(fit(host([]), instance(vcpus=5, memory_mb=3000, numa_nodes=2)))
    assert [(c.host_cell, c.vcpus, c.memory_mb) for c in p.cells] == [(0, 3, 1500), (1, 2, 1500)]


def test_huge_pages_come_from_the_cell() -> None:
    p = placed(fit(host([]), instance(memory_mb=1024, hugepage_size_kb=2048, numa_nodes=None)))
    assert (p.cells[0].hugepage_size_kb, p.cells[0].hugepages) == (2048, 512)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vcpus": 17}, "resources: host has 16 shared vCPUs free, 17 needed"),
        ({"vcpus": 9}, "resources: cell 0 has 8 shared vCPUs free, 9 needed; "
                       "cell 1 has 8 shared vCPUs free, 9 needed"),
        ({"memory_mb": 20000}, "resources: cell 0 has 16384 MB memory free, 20000 needed; "
                               "cell 1 has 16384 MB memory free, 20000 needed"),
        ({"memory_mb": 40000, "numa_nodes": None}, "resources: host has 32768 MB memory free, "
                                                   "40000 needed"),
        ({"hugepage_size_kb": 1048576}, "resources: cell 0 has 0 free 1048576 KiB huge pages, "
                                        "1 needed; cell 1 has 0 free 1048576 KiB huge pages, "
                                        "1 needed"),
        ({"cpu_policy": CpuPolicy.DEDICATED, "vcpus": 9}, "resources: cell 0 has 8 free CPUs to "
                                                          "pin, 9 needed; cell 1 has 8 free CPUs "
                                                          "to pin, 9 needed"),
        ({"numa_nodes": 3}, "resources: the guest has 3 NUMA nodes, the host 2 cells"),
    ],
)  # fmt: skip
def test_resource_failures(fields: dict[str, object], message: str) -> None:
    result = failed(fit(host([]), instance(**fields)))
    assert result.stage is FitStage.RESOURCES
    assert result.message == message


# -- apply and release -------------------------------------------------------------------------


def test_apply_claims_devices_blocks_relatives_and_release_restores() -> None:
    devices = [*nic("0000:18:00.0", 0, "physnet1", 2), gpu("0000:4a:00.0", 0)]
    before = host(devices)
    p = placed(fit(before, instance(port("physnet1"), group("gpu", GPU), vcpus=4)))
    after = apply(before, p)
    states = {str(a): d.state for a, d in after.devices.items()}
    assert states == {
        "0000:18:00.0": DeviceState.UNCLAIMABLE,
        "0000:18:02.0": DeviceState.CLAIMED,
        "0000:18:02.1": DeviceState.AVAILABLE,
        "0000:4a:00.0": DeviceState.CLAIMED,
    }
    assert after.free_devices == 1
    assert after.usage_of(0).shared_vcpus == 4
    assert after.placements == {"vm1": p}
    with pytest.raises(AlreadyExists):
        apply(after, p)
    back = release(after, "vm1")
    assert dict(back.devices) == dict(before.devices)
    assert back.pools == before.pools
    assert back.usage == before.usage
    assert back.totals == before.totals
    with pytest.raises(NotFound):
        release(back, "vm1")


def test_apply_allocates_on_request() -> None:
    before = host(nic("0000:18:00.0", 0, "physnet1", 1))
    after = apply(before, placed(fit(before, instance(port("physnet1")))), allocate=True)
    assert after.devices[addr("0000:18:02.0")].state is DeviceState.ALLOCATED
    assert after.devices[addr("0000:18:00.0")].state is DeviceState.UNAVAILABLE


def test_apply_of_a_stale_placement_fails() -> None:
    before = host(nic("0000:18:00.0", 0, "physnet1", 1))
    p = placed(fit(before, instance(port("physnet1"))))
    after = apply(before, p)
    with pytest.raises(InvalidTransition, match="is claimed instead of available"):
        apply(after, replace(p, instance_id="vm2"))


def test_build_accounts_existing_placements() -> None:
    empty = host([])
    p = placed(fit(empty, instance(vcpus=4, cpu_policy=CpuPolicy.DEDICATED)))
    rebuilt = HostState.build("h1", empty.cells, [], placements=[p])
    assert rebuilt.usage == apply(empty, p).usage


def test_remove_and_restore_rebuild_pools() -> None:
    h = host(nic("0000:18:00.0", 0, "physnet1", 2))
    gone = h.transition(addr("0000:18:02.0"), Operation.REMOVE)
    assert sum(p.total for p in gone.pools) == 2
    back = gone.transition(addr("0000:18:02.0"), Operation.RESTORE)
    assert back.pools == h.pools


def test_unknown_device_is_not_found() -> None:
    with pytest.raises(NotFound, match="not an assignable device of host h1"):
        host([]).transition(addr("0000:18:02.0"), Operation.RESERVE)


# -- properties --------------------------------------------------------------------------------

NETWORKS = ["physnet1", "physnet2"]


@st.composite
def hosts(draw: st.DrawFn) -> HostState:
    devices: list[Device] = []
    for n in range(draw(st.integers(1, 4))):
        node = draw(st.sampled_from([0, 1, None]))
        network = draw(st.sampled_from(NETWORKS))
        extra = draw(st.sampled_from([{}, {"trusted": "true"}]))
        pf = f"0000:{0x18 + n:02x}:00.0"
        devices += nic(pf, node, network, draw(st.integers(0, 4)), **extra)
    for n in range(draw(st.integers(0, 2))):
        devices.append(gpu(f"0000:{0x4A + n:02x}:00.0", draw(st.sampled_from([0, 1]))))
    h = HostState.build("h", [cell(0, cpus=16), cell(1, cpus=16)], devices)
    # some devices already taken or reserved, through the state machine
    for i, address in enumerate(draw(st.lists(st.sampled_from(sorted(h.devices)), max_size=6))):
        op = draw(st.sampled_from([Operation.ALLOCATE, Operation.CLAIM, Operation.RESERVE]))
        with contextlib.suppress(InvalidTransition):
            h = h.transition(address, op, f"old{i}")
    return h


@st.composite
def device_requests(draw: st.DrawFn) -> DeviceRequest:
    kind = draw(st.sampled_from(["port", "pf", "gpu", "either"]))
    count = draw(st.integers(1, 3))
    policy = draw(st.sampled_from([None, *NumaPolicy]))
    network = draw(st.sampled_from(NETWORKS))
    if kind == "port":
        request = port(network, count=count)
    elif kind == "pf":
        request = group("pf", DeviceMatch.of(dev_type=DeviceType.PF, physical_network=network))
    elif kind == "gpu":
        request = group("gpu", GPU, count=count)
    else:
        vf = DeviceMatch.of(dev_type=DeviceType.VF, physical_network=network)
        request = group("either", vf, GPU, count=count)
    return replace(request, numa_policy=policy)


@st.composite
def instances(draw: st.DrawFn) -> InstanceRequest:
    return InstanceRequest(
        vcpus=draw(st.integers(1, 8)),
        memory_mb=1024,
        numa_nodes=draw(st.sampled_from([None, 1, 2])),
        device_requests=tuple(draw(st.lists(device_requests(), min_size=1, max_size=3))),
        numa_policy=draw(st.sampled_from([None, *NumaPolicy])),
        instance_id="new",
    )


def check_placement(h: HostState, request: InstanceRequest, p: Placement) -> None:
    chosen = p.all_devices
    assert len(chosen) == len(set(chosen)), "a device was chosen twice"
    chosen_set = set(chosen)
    for device_request, group_devices in zip(request.device_requests, p.devices, strict=True):
        assert len(group_devices) == device_request.count
        policy = request.policy_of(device_request)
        for address in group_devices:
            device = h.devices[address]
            assert device.state is DeviceState.AVAILABLE
            assert any(PoolKey.of(device).matches(alt) for alt in device_request.alternatives)
            if device.is_pf:
                assert any(alt.dev_type is DeviceType.PF for alt in device_request.alternatives)
                assert not chosen_set & set(h.index.children.get(address, ()))
            if device.parent is not None:
                assert device.parent not in chosen_set
            if p.cells and policy is NumaPolicy.REQUIRED:
                assert device.numa_node in p.host_cells
    # the state machine agrees, and the pools count exactly the available devices
    after = apply(h, p)
    for address in chosen:
        assert after.devices[address].state in HELD
    available = sum(d.state is DeviceState.AVAILABLE for d in after.devices.values())
    assert after.free_devices == available <= h.free_devices - len(chosen)


@settings(max_examples=250, deadline=None)
@given(hosts(), instances())
def test_fit_properties(h: HostState, request: InstanceRequest) -> None:
    result = fit(h, request)
    assert fit(h, request) == result  # deterministic
    if isinstance(result, Placement):
        check_placement(h, request, result)
        assert len(result.cells) == (request.guest_nodes or 0)
        return
    counts = [(s.before, s.after) for s in result.stages]
    for (_, after), (before, _) in itertools.pairwise(counts):
        assert before == after  # each stage starts from what the previous one kept
    assert all(after <= before for before, after in counts)
    if result.stages:
        assert result.stages[-1].after < result.needed
        assert result.message.endswith(f"{result.needed} needed")


@settings(max_examples=100, deadline=None)
@given(hosts(), instances())
def test_apply_then_release_restores_the_host(h: HostState, request: InstanceRequest) -> None:
    result = fit(h, request)
    if isinstance(result, Placement):
        back = release(apply(h, result), "new")
        assert dict(back.devices) == dict(h.devices)
        assert back.pools == h.pools
        assert back.usage == h.usage


@settings(max_examples=100, deadline=None)
@given(hosts(), instances(), st.booleans())
def test_batched_transitions_equal_one_at_a_time(
    h: HostState, request: InstanceRequest, allocate: bool
) -> None:
    """``HostState.transitions`` (what apply and release use) is the same as applying each
    operation with ``transition`` in turn: devices, pools and their free order."""
    result = fit(h, request)
    if not isinstance(result, Placement):
        return
    op = Operation.ALLOCATE if allocate else Operation.CLAIM
    steps = [(address, op, "new") for address in result.all_devices]
    one_by_one = h
    for address, step_op, owner in steps:
        one_by_one = one_by_one.transition(address, step_op, owner)
    batched = h.transitions(steps)
    assert dict(batched.devices) == dict(one_by_one.devices)
    assert batched.pools == one_by_one.pools
    freed = [(address, Operation.FREE, "new") for address in result.all_devices]
    assert batched.transitions(freed).pools == h.pools


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 2),
    st.integers(0, 3),
    st.lists(st.sampled_from(["pf", "vf"]), min_size=1, max_size=4),
    st.sampled_from(list(VfStrategy)),
)
def test_pf_and_vf_requests_never_collide(
    nics: int, vfs: int, kinds: list[str], strategy: VfStrategy
) -> None:
    devices = [d for n in range(nics) for d in nic(f"0000:{0x18 + n:02x}:00.0", 0, "physnet1", vfs)]
    h = HostState.build("h", [cell(0, cpus=16)], devices)
    requests = [group("pf", PF_MATCH) if kind == "pf" else port("physnet1") for kind in kinds]
    request = instance(*requests, numa_nodes=None)
    result = fit(h, request, FitOptions(vf_strategy=strategy))
    if isinstance(result, Placement):
        check_placement(h, request, result)
    # a whole PF per "pf" request, and a PF with VFs for the "vf" requests, are both needed
    pfs_needed = kinds.count("pf") + (1 if "vf" in kinds and vfs else 0)
    fits = pfs_needed <= nics and kinds.count("vf") <= vfs * (nics - kinds.count("pf"))
    assert isinstance(result, Placement) is fits


@pytest.mark.parametrize(
    ("trusted", "phrase"),
    [
        (True, "trusted devices on physnet2"),
        (False, "untrusted devices on physnet2"),
        (None, "devices on physnet2"),
    ],
)
def test_failure_labels_say_when_a_port_asks_for_trust(trusted: bool | None, phrase: str) -> None:
    from pcifleet.domain.device_fit import label
    from pcifleet.domain.vnic import VnicType, port_device_request

    request = port_device_request(VnicType.DIRECT, "physnet2", trusted, "port-1")
    assert request is not None
    assert label(request) == phrase
