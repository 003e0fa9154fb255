"""Classifying a replayed boot against Nova's decision."""

from __future__ import annotations

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.sim.nova_compare import (
    DeviceRelation,
    Difference,
    Outcome,
    classify,
    compare,
    device_relation,
)
from pcifleet.sim.workload import NovaDecision

A = PciAddress.parse
PF0, PF1 = A("0000:18:00.0"), A("0000:1a:00.0")
VF0A, VF0B, VF1A = A("0000:18:02.0"), A("0000:18:02.1"), A("0000:1a:02.0")
GPU0, GPU1 = A("0000:4a:00.0"), A("0000:ca:00.0")
DEVICES = {
    d.address: d
    for d in (
        Device(PF0, "8086", "1572", DeviceType.PF),
        Device(PF1, "8086", "1572", DeviceType.PF),
        Device(VF0A, "8086", "154c", DeviceType.VF, parent=PF0),
        Device(VF0B, "8086", "154c", DeviceType.VF, parent=PF0),
        Device(VF1A, "8086", "154c", DeviceType.VF, parent=PF1),
        Device(GPU0, "10de", "2330", DeviceType.PCI),
        Device(GPU1, "10de", "2330", DeviceType.PCI),
    )
}


def nova(host: int | None = 0, cell: int | None = 0, *devices: PciAddress) -> NovaDecision:
    return NovaDecision(0, host is not None, 10, host, cell, devices)


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        (Outcome(0, True, 0, (0,), (VF0A,)), nova(0, 0, VF0A), Difference.SAME),
        (Outcome(0, True, 0, (0,), (VF0A,)), nova(0, 0, VF0B), Difference.OTHER_DEVICES),
        (Outcome(0, True, 0, (1,), (VF0A,)), nova(0, 0, VF0A), Difference.OTHER_CELL),
        (Outcome(0, True, 3, (0,), (VF0A,)), nova(0, 0, VF0A), Difference.OTHER_HOST),
        (Outcome(0, False, reason="no"), nova(0, 0, VF0A), Difference.ONLY_NOVA_PLACED),
        (Outcome(0, True, 0, (0,), (VF0A,)), nova(None, None), Difference.ONLY_PCIFLEET_PLACED),
        (Outcome(0, False, reason="no"), nova(None, None), Difference.BOTH_REJECTED),
        (Outcome(0, True, 0, (0,), (VF0A, VF0B)), nova(0, 0, VF0B, VF0A), Difference.SAME),
    ],
)
def test_classify(ours: Outcome, theirs: NovaDecision, expected: Difference) -> None:
    assert classify(ours, theirs) is expected


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ((VF0A,), (VF0B,), DeviceRelation.SAME_PF),
        ((VF0A,), (VF1A,), DeviceRelation.OTHER_PF),
        ((GPU0,), (GPU1,), DeviceRelation.OTHER_DEVICE),
        ((PF0,), (PF1,), DeviceRelation.OTHER_DEVICE),
    ],
)
def test_device_relation(
    ours: tuple[PciAddress, ...], theirs: tuple[PciAddress, ...], expected: DeviceRelation
) -> None:
    assert device_relation(ours, theirs, DEVICES) is expected


def test_compare_counts_and_examples() -> None:
    outcomes = [
        Outcome(0, True, 0, (0,), (VF0A,)),
        Outcome(1, True, 0, (0,), (VF0B,)),
        Outcome(2, True, 2, (0,), (GPU0,), nova_host_verdict="spec: 0 of 3 free devices match"),
        Outcome(3, False, reason="100 hosts: 100 resources"),
    ]
    decisions = [
        NovaDecision(0, True, 5, 0, 0, (VF0A,)),
        NovaDecision(1, True, 5, 0, 0, (VF0A,)),
        NovaDecision(2, True, 5, 1, 0, (GPU0,)),
        NovaDecision(3, True, 5, 1, 1, (GPU1,)),
    ]
    result = compare(outcomes, decisions, [], DEVICES)
    assert result.total == 4
    assert (result.same_host, result.same_cell, result.same_devices) == (2, 2, 1)
    assert (result.ours_placed, result.nova_placed) == (3, 4)
    assert result.device_relations == {DeviceRelation.SAME_PF: 1}
    assert result.nova_host_verdicts == {"spec": 1}
    assert [e.index for e in result.examples] == [1, 2, 3]
    assert "spec: 0 of 3" in result.examples[1].detail
    assert "100 hosts: 100 resources" in result.examples[2].detail
    line = result.as_json()
    assert line["nova_same_host"] == 2
    assert line["nova_other_host"] == 1
    assert line["nova_only_nova_placed"] == 1
