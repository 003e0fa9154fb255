"""Pools: keys, counts, order, refresh and memoized request matching."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.pool import (
    KeySet,
    PoolKey,
    build_pools,
    matching_pools,
    pool_tags,
    refresh_pool,
    truthy,
)
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags


def addr(text: str) -> PciAddress:
    return PciAddress.parse(text)


def nic(pf: str, node: int, network: str, vfs: int, **tags: str) -> list[Device]:
    pf_addr = addr(pf)
    all_tags = Tags({"physical_network": network, **tags})
    devices = [Device(pf_addr, "8086", "1572", DeviceType.PF, numa_node=node, tags=all_tags)]
    for i in range(vfs):
        devices.append(
            Device(
                pf_addr.offset(16 + i),
                "8086",
                "154c",
                DeviceType.VF,
                numa_node=node,
                parent=pf_addr,
                vf_index=i,
                tags=all_tags,
            )
        )
    return devices


def gpu(address: str, node: int | None) -> Device:
    return Device(addr(address), "10de", "2330", DeviceType.PCI, numa_node=node)


def test_vfs_pool_per_parent_pf_and_identical_pci_devices_pool_together() -> None:
    devices = [
        *nic("0000:18:00.0", 0, "physnet1", 3),
        *nic("0000:19:00.0", 0, "physnet1", 2),
        gpu("0000:4a:00.0", 0),
        gpu("0000:4b:00.0", 0),
        gpu("0000:ca:00.0", 1),
    ]
    pools = build_pools(devices)
    summary = [(p.key.dev_type, p.key.numa_node, p.key.parent, p.count) for p in pools]
    assert summary == [
        # fewest tags first: the untagged GPUs, by NUMA node
        (DeviceType.PCI, 0, None, 2),
        (DeviceType.PCI, 1, None, 1),
        # then the tagged NIC functions: VFs per parent PF, identical PFs together
        (DeviceType.VF, 0, addr("0000:18:00.0"), 3),
        (DeviceType.VF, 0, addr("0000:19:00.0"), 2),
        (DeviceType.PF, 0, None, 2),
    ]
    assert pools[0].free == (addr("0000:4a:00.0"), addr("0000:4b:00.0"))


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        # Nova's default, so port requests (remote_managed=False) match
        (nic("0000:18:00.0", 0, "physnet1", 1)[1], "false"),
        (nic("0000:18:00.0", 0, "physnet1", 0)[0], "false"),
        (nic("0000:18:00.0", 0, "physnet1", 1, remote_managed="true")[1], "true"),
        (gpu("0000:4a:00.0", 0), None),
    ],
)
def test_remote_managed_default(device: Device, expected: str | None) -> None:
    assert pool_tags(device).get("remote_managed") == expected


@pytest.mark.parametrize(
    ("devices", "pools"),
    [
        # different tags, NUMA nodes or products split pools
        ([gpu("0000:4a:00.0", 0), replace(gpu("0000:4b:00.0", 0), tags=Tags({"a": "b"}))], 2),
        ([gpu("0000:4a:00.0", 0), gpu("0000:4b:00.0", None)], 2),
        ([gpu("0000:4a:00.0", 0), replace(gpu("0000:4b:00.0", 0), product_id="2331")], 2),
        # states do not
        ([gpu("0000:4a:00.0", 0), replace(gpu("0000:4b:00.0", 0), state=DeviceState.RESERVED)], 1),
        # removed devices are gone from the host
        ([replace(gpu("0000:4a:00.0", 0), state=DeviceState.REMOVED)], 0),
    ],
)
def test_pool_keys(devices: list[Device], pools: int) -> None:
    assert len(build_pools(devices)) == pools


def test_counts_only_available_devices() -> None:
    devices = nic("0000:18:00.0", 0, "physnet1", 4)
    devices[1] = replace(devices[1], state=DeviceState.ALLOCATED, owner="vm")
    devices[2] = replace(devices[2], state=DeviceState.RESERVED)
    devices[0] = replace(devices[0], state=DeviceState.UNAVAILABLE)
    vf_pool, pf_pool = build_pools(devices)
    assert (vf_pool.total, vf_pool.count, vf_pool.in_use) == (4, 2, 2)
    assert (pf_pool.total, pf_pool.count) == (1, 0)


def test_refresh_rereads_states() -> None:
    devices = {d.address: d for d in nic("0000:18:00.0", 0, "physnet1", 2)}
    vf_pool, _ = build_pools(devices.values())
    first = vf_pool.free[0]
    devices[first] = replace(devices[first], state=DeviceState.CLAIMED, owner="vm")
    refreshed = refresh_pool(vf_pool, devices)
    assert refreshed.free == vf_pool.free[1:]
    assert refreshed.members == vf_pool.members


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (DeviceMatch.of(physical_network="physnet1", remote_managed="False"), (0, 1)),
        (DeviceMatch.of(physical_network="PHYSNET1"), (0, 1)),
        (DeviceMatch.of(physical_network="physnet2"), ()),
        (DeviceMatch.of(dev_type=DeviceType.PF, physical_network="physnet1"), (1,)),
        (DeviceMatch.of("10de", "2330"), (2,)),
        (DeviceMatch.of("10de", "2330", physical_network=None), (2,)),
        (DeviceMatch.of(remote_managed="true"), ()),
    ],
)
def test_matching_pools(match: DeviceMatch, expected: tuple[int, ...]) -> None:
    pools = build_pools([*nic("0000:18:00.0", 0, "physnet1", 1), gpu("0000:4a:00.0", 0)])
    keys = KeySet(tuple(p.key for p in pools))
    order = {p.key.dev_type: i for i, p in enumerate(pools)}
    by_type = (order[DeviceType.VF], order[DeviceType.PF], order[DeviceType.PCI])
    assert matching_pools(keys, (match,)) == tuple(sorted(by_type[i] for i in expected))


def test_key_sets_of_identical_hosts_are_equal() -> None:
    one = build_pools(nic("0000:18:00.0", 0, "physnet1", 2))
    two = build_pools(nic("0000:18:00.0", 0, "physnet1", 2))
    other = build_pools(nic("0000:18:00.0", 1, "physnet1", 2))
    assert KeySet(tuple(p.key for p in one)) == KeySet(tuple(p.key for p in two))
    assert hash(KeySet(tuple(p.key for p in one))) == hash(KeySet(tuple(p.key for p in two)))
    assert KeySet(tuple(p.key for p in one)) != KeySet(tuple(p.key for p in other))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes", True), ("false", False), (None, False)],
)
def test_truthy(value: str | None, expected: bool) -> None:
    assert truthy(value) is expected


def test_pool_key_derived_fields() -> None:
    key = PoolKey.of(
        nic("0000:18:00.0", 0, "p", 1, remote_managed="yes", live_migratable="True")[1]
    )
    assert key.remote_managed is True
    assert key.live_migratable == "true"


# -- properties --------------------------------------------------------------------------------

STATES = st.sampled_from(list(DeviceState))


@st.composite
def hosts(draw: st.DrawFn) -> list[Device]:
    devices: list[Device] = []
    for n in range(draw(st.integers(0, 3))):
        node = draw(st.sampled_from([0, 1, None]))
        network = draw(st.sampled_from(["physnet1", "physnet2"]))
        devices += nic(f"0000:{0x18 + n:02x}:00.0", node or 0, network, draw(st.integers(0, 5)))
    for n in range(draw(st.integers(0, 3))):
        devices.append(gpu(f"0000:{0x4A + n:02x}:00.0", draw(st.sampled_from([0, 1, None]))))
    return [replace(d, state=draw(STATES)) for d in devices]


@settings(max_examples=200, deadline=None)
@given(hosts(), st.randoms(use_true_random=False))
def test_pools_are_consistent_and_deterministic(devices: list[Device], rng: object) -> None:
    pools = build_pools(devices)
    present = [d for d in devices if d.state is not DeviceState.REMOVED]
    # every present device is in exactly one pool, with a key it produces
    members = [a for p in pools for a in p.members]
    assert sorted(members) == sorted(d.address for d in present)
    by_address = {d.address: d for d in devices}
    for pool in pools:
        assert all(PoolKey.of(by_address[a]) == pool.key for a in pool.members)
        assert pool.free == tuple(
            a for a in pool.members if by_address[a].state is DeviceState.AVAILABLE
        )
    assert sum(p.count for p in pools) == sum(d.state is DeviceState.AVAILABLE for d in devices)
    # the order does not depend on the order devices are reported in
    shuffled = list(devices)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert build_pools(shuffled) == pools
