"""The pure inventory diff: what a report changes, one rule per case."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from pcifleet.control.db.repo import device_facts
from pcifleet.control.services.inventory_diff import (
    DeviceSnapshot,
    ReportPlan,
    plan_report,
)
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PF = PciAddress.parse("0000:3b:00.0")
VF0 = PciAddress.parse("0000:3b:02.0")
VF1 = PciAddress.parse("0000:3b:02.1")
S = DeviceState


def pf_device() -> Device:
    return Device(PF, "8086", "158b", DeviceType.PF)


def vf_device(address: PciAddress, index: int) -> Device:
    return Device(address, "8086", "154c", DeviceType.VF, parent=PF, vf_index=index)


def snapshot(
    device: Device,
    state: DeviceState = S.AVAILABLE,
    owner: str | None = None,
    vanished: bool = False,
) -> DeviceSnapshot:
    return DeviceSnapshot(
        f"id-{device.address}",
        str(device.address),
        device_facts(device),
        state,
        owner,
        vanished,
        None,
    )


def plan(stored: Sequence[DeviceSnapshot], devices: Sequence[Device]) -> ReportPlan:
    return plan_report("h", stored, devices, {}, NOW)


@pytest.mark.parametrize(
    ("pf_state", "vf_state"),
    [
        (S.AVAILABLE, S.AVAILABLE),
        (S.RESERVED, S.AVAILABLE),
        (S.CLAIMED, S.UNCLAIMABLE),
        (S.ALLOCATED, S.UNAVAILABLE),
    ],
)
def test_a_new_vf_follows_its_stored_pf(pf_state: DeviceState, vf_state: DeviceState) -> None:
    owner = "vm" if pf_state in (S.CLAIMED, S.ALLOCATED) else None
    result = plan([snapshot(pf_device(), pf_state, owner)], [pf_device(), vf_device(VF0, 0)])
    [inserted] = result.inserts
    assert (inserted["address"], inserted["state"]) == (str(VF0), vf_state.value)


def test_a_new_vf_whose_pf_is_not_tracked_is_available() -> None:
    [inserted] = plan([], [vf_device(VF0, 0)]).inserts
    assert inserted["state"] == S.AVAILABLE.value


@pytest.mark.parametrize(
    ("vf_state", "pf_state"),
    [
        (S.AVAILABLE, S.AVAILABLE),
        (S.RESERVED, S.UNCLAIMABLE),
        (S.CLAIMED, S.UNCLAIMABLE),
        (S.ALLOCATED, S.UNAVAILABLE),
    ],
)
def test_a_new_pf_follows_its_stored_vfs(vf_state: DeviceState, pf_state: DeviceState) -> None:
    owner = "vm" if vf_state in (S.CLAIMED, S.ALLOCATED) else None
    result = plan([snapshot(vf_device(VF0, 0), vf_state, owner)], [pf_device(), vf_device(VF0, 0)])
    [inserted] = result.inserts
    assert (inserted["address"], inserted["state"]) == (str(PF), pf_state.value)
    assert result.unchanged == 1


def test_unchanged_devices_produce_no_writes() -> None:
    devices = [pf_device(), vf_device(VF0, 0)]
    result = plan([snapshot(d) for d in devices], devices)
    assert not result.changes_devices
    assert (result.unchanged, result.updated) == (2, 0)


def test_only_changed_columns_are_updated() -> None:
    stored = snapshot(vf_device(VF0, 0))
    result = plan([stored], [vf_device(VF0, 3)])
    assert result.updates == [{"id": stored.id, "vf_index": 3, "updated_at": NOW}]


def test_a_held_device_is_flagged_once_and_listed_every_time() -> None:
    fresh = plan([snapshot(vf_device(VF1, 1), S.ALLOCATED, "vm")], [])
    assert (fresh.newly_vanished, fresh.kept_vanished, fresh.deletes) == (
        [f"id-{VF1}"],
        [VF1],
        [],
    )
    flagged = plan([snapshot(vf_device(VF1, 1), S.ALLOCATED, "vm", vanished=True)], [])
    assert (flagged.newly_vanished, flagged.kept_vanished) == ([], [VF1])
    assert not flagged.changes_devices


def test_a_flagged_device_that_returns_is_unflagged_without_counting_as_updated() -> None:
    result = plan(
        [snapshot(vf_device(VF1, 1), S.ALLOCATED, "vm", vanished=True)], [vf_device(VF1, 1)]
    )
    assert result.reappeared == [VF1]
    assert result.updated == 0
    assert result.updates == [
        {"id": f"id-{VF1}", "vanished": False, "vanished_at": None, "updated_at": NOW}
    ]
