"""Segments: per-type rules, VLAN/VNI range parsing and lowest-free allocation."""

from __future__ import annotations

import pytest

from pcifleet.domain.errors import InvalidNetwork
from pcifleet.network.errors import NetworkExhausted
from pcifleet.network.segments import (
    IdRange,
    NetworkType,
    Segment,
    SegmentSpec,
    VlanRanges,
    allocate,
    check_specs,
    device_segment,
    parse_network_type,
    parse_vni_ranges,
)

F, V, X = NetworkType.FLAT, NetworkType.VLAN, NetworkType.VXLAN


@pytest.mark.parametrize(
    ("spec", "field", "rule"),
    [
        (SegmentSpec(F), "physical_network", "required"),
        (SegmentSpec(V), "physical_network", "required"),
        (SegmentSpec(F, "physnet1", 5), "segmentation_id", "flat"),
        (SegmentSpec(V, "physnet1", 0), "segmentation_id", "range"),
        (SegmentSpec(V, "physnet1", 4095), "segmentation_id", "range"),
        (SegmentSpec(X, "physnet1"), "physical_network", "vxlan"),
        (SegmentSpec(X, None, 2**24), "segmentation_id", "range"),
    ],
)
def test_invalid_segments_name_field_and_rule(spec: SegmentSpec, field: str, rule: str) -> None:
    with pytest.raises(InvalidNetwork) as caught:
        check_specs([spec])
    assert caught.value.fields["field"] == field
    assert caught.value.fields["rule"] == rule


def test_no_segment_and_duplicates_are_refused() -> None:
    with pytest.raises(InvalidNetwork, match="at least one"):
        check_specs([])
    with pytest.raises(InvalidNetwork, match="duplicate"):
        check_specs([SegmentSpec(V, "p", 10), SegmentSpec(V, "p", 10)])


def test_unknown_network_type_lists_accepted() -> None:
    with pytest.raises(InvalidNetwork, match="flat, vlan, vxlan"):
        parse_network_type("gre")


def test_vlan_ranges_parse_neutron_format() -> None:
    ranges = VlanRanges.parse("physnet1:100:101, physnet1:200:200,physnet2")
    assert ranges.of("physnet1") == (IdRange(100, 101), IdRange(200, 200))
    assert ranges.of("physnet2") == ()
    assert ranges.of("other") == ()


@pytest.mark.parametrize("text", ["p:1", "p:a:b", "p:10:5", "p:0:4", "p:1:4095", ":1:2"])
def test_bad_vlan_ranges_are_refused(text: str) -> None:
    with pytest.raises(InvalidNetwork) as caught:
        VlanRanges.parse(text)
    assert caught.value.fields["field"] == "network_vlan_ranges"


def test_vlan_allocation_takes_lowest_free_and_exhausts() -> None:
    ranges = VlanRanges.parse("physnet1:100:101,physnet1:200:200")
    spec = SegmentSpec(V, "physnet1")
    assert allocate(spec, ranges, (), set()) == Segment(V, "physnet1", 100)
    assert allocate(spec, ranges, (), {100, 101}).segmentation_id == 200
    with pytest.raises(NetworkExhausted, match="VLAN ranges of physnet1"):
        allocate(spec, ranges, (), {100, 101, 200})
    with pytest.raises(NetworkExhausted):
        allocate(SegmentSpec(V, "physnet9"), ranges, (), set())


def test_vni_allocation_and_explicit_ids_are_kept() -> None:
    vnis = parse_vni_ranges("5000:5001")
    assert allocate(SegmentSpec(X), VlanRanges(), vnis, {5000}).segmentation_id == 5001
    assert allocate(SegmentSpec(V, "p", 42), VlanRanges(), vnis, {42}).segmentation_id == 42
    assert allocate(SegmentSpec(F, "p"), VlanRanges(), vnis, set()) == Segment(F, "p")


def test_device_segment_is_first_flat_or_vlan_and_vlan_of_flat_is_zero() -> None:
    vx, vl = Segment(X, None, 5001), Segment(V, "physnet1", 1000)
    assert device_segment((vx, vl)) == vl
    assert device_segment((vx,)) is None
    assert Segment(F, "p").vlan == 0 and vl.vlan == 1000 and vx.vlan is None
    assert {vx.key, vl.key, Segment(F, "p").key} == {"vxlan:5001", "vlan:physnet1:1000", "flat:p"}
