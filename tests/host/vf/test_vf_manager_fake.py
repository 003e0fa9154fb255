"""VfManager over the in-memory fake NIC (VF operations need SR-IOV hardware this machine lacks).

Every test name says ``fake_nic``: the behaviour shown (snapshot/restore, no-op, rollback,
locking) is the manager's own; the fake only stands in for the PF's VF table.
"""

from __future__ import annotations

import errno
import threading

import pytest

from pcifleet.domain.errors import (
    InvalidVfRate,
    VfError,
    VfNotFound,
    VfRollbackFailed,
    VfUnsupported,
)
from pcifleet.host.vf.configurator import VfConfigurator
from pcifleet.host.vf.fake import FakeVfConfigurator
from pcifleet.host.vf.model import (
    LinkState,
    TxRate,
    VfField,
    VfSettings,
    VfState,
    VlanProto,
    VlanTag,
)
from pcifleet.host.vf.service import VfManager

PF = "enp59s0f0"

FULL = VfSettings(
    mac="fa:16:3e:11:22:33",
    vlan=VlanTag(1000, qos=3, proto=VlanProto.DOT1AD),
    min_tx_rate=100,
    max_tx_rate=1000,
    spoofchk=False,
    trust=True,
    link_state=LinkState.DISABLE,
)


@pytest.fixture
def nic() -> FakeVfConfigurator:
    fake = FakeVfConfigurator()
    fake.add_pf(PF, 8)
    return fake


def test_fake_nic_satisfies_the_configurator_protocol(nic: FakeVfConfigurator) -> None:
    assert isinstance(nic, VfConfigurator)


def test_vf_configure_writes_every_field_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    change = manager.configure(PF, 3, FULL)
    assert change.written == tuple(VfField)
    assert change.state == VfState(
        index=3,
        mac="fa:16:3e:11:22:33",
        vlan=VlanTag(1000, 3, VlanProto.DOT1AD),
        rate=TxRate(100, 1000),
        spoofchk=False,
        trust=True,
        link_state=LinkState.DISABLE,
    )
    assert nic.read(PF, 3) == change.state
    assert [w.field for w in nic.writes] == list(VfField)


def test_vf_same_desired_state_twice_is_a_no_op_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 2, FULL)
    writes = len(nic.writes)
    change = manager.configure(PF, 2, FULL)
    assert change.written == ()
    assert len(nic.writes) == writes


def test_vf_configure_writes_only_what_differs_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 2, FULL)
    before = len(nic.writes)
    change = manager.configure(PF, 2, VfSettings(mac=FULL.mac, spoofchk=True))
    assert change.written == (VfField.SPOOFCHK,)
    assert [w.field for w in nic.writes[before:]] == [VfField.SPOOFCHK]


def test_vf_configure_keeps_current_state_as_no_op_fake_nic(nic: FakeVfConfigurator) -> None:
    # the kernel defaults already match: held, but nothing written
    manager = VfManager(nic)
    change = manager.configure(PF, 0, VfSettings(spoofchk=True, link_state=LinkState.AUTO))
    assert change.written == ()
    assert nic.writes == []
    assert manager.held() == ((PF, 0),)


def test_vf_restore_on_release_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    original = nic.read(PF, 5)
    manager.configure(PF, 5, FULL)
    change = manager.release(PF, 5)
    assert change.state == original
    assert nic.read(PF, 5) == original
    assert set(change.written) == set(VfField)
    assert manager.held() == ()
    assert manager.snapshot(PF, 5) is None


def test_vf_restore_includes_guest_changed_mac_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 1, VfSettings(mac="fa:16:3e:00:00:01", vlan=VlanTag(100)))
    nic.guest_sets_mac(PF, 1, "02:00:00:be:ef:01")
    change = manager.release(PF, 1)
    assert nic.read(PF, 1).mac == "00:00:00:00:00:00"
    assert VfField.MAC in change.written


def test_vf_restore_of_only_guest_changed_mac_fake_nic(nic: FakeVfConfigurator) -> None:
    # configure touched nothing but the VLAN; the guest's MAC change is still undone
    manager = VfManager(nic)
    manager.configure(PF, 1, VfSettings(vlan=VlanTag(100)))
    nic.guest_sets_mac(PF, 1, "02:00:00:be:ef:01")
    change = manager.release(PF, 1)
    assert change.written == (VfField.MAC, VfField.VLAN)
    assert nic.read(PF, 1) == VfState(index=1)


def test_vf_snapshot_is_the_first_one_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 4, VfSettings(vlan=VlanTag(10)))
    manager.configure(PF, 4, VfSettings(vlan=VlanTag(20), trust=True))
    assert manager.snapshot(PF, 4) == VfState(index=4)
    manager.release(PF, 4)
    assert nic.read(PF, 4) == VfState(index=4)


def test_vf_release_without_snapshot_writes_nothing_fake_nic(nic: FakeVfConfigurator) -> None:
    change = VfManager(nic).release(PF, 6)
    assert change.written == ()
    assert nic.writes == []


def test_vf_release_skips_flags_the_driver_hides_fake_nic() -> None:
    nic = FakeVfConfigurator()
    nic.add_pf(PF, 2, reports_spoofchk=False, reports_trust=False)
    manager = VfManager(nic)
    manager.configure(PF, 0, VfSettings(mac="fa:16:3e:00:00:09", spoofchk=True))
    assert manager.snapshot(PF, 0) == VfState(index=0, spoofchk=None, trust=None)
    change = manager.release(PF, 0)
    assert change.written == (VfField.MAC,)


@pytest.mark.parametrize("failing", list(VfField))
def test_vf_rollback_on_injected_failure_fake_nic(
    nic: FakeVfConfigurator, failing: VfField
) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 7, VfSettings(vlan=VlanTag(5), max_tx_rate=50))
    before = nic.read(PF, 7)
    start = len(nic.writes)
    nic.fail(PF, 7, failing, errno.EPERM)
    with pytest.raises(VfError) as caught:
        manager.configure(PF, 7, FULL)
    error = caught.value
    assert type(error) is VfError
    assert error.fields["field"] == failing.value
    assert error.fields["errno"] == errno.EPERM
    assert "Operation not permitted" in str(error)
    assert PF in str(error) and "VF 7" in str(error)
    assert nic.read(PF, 7) == before
    order = list(VfField)
    done = order[: order.index(failing)]
    assert [w.field for w in nic.writes[start:]] == done + done[::-1]
    # the snapshot of the first configure survives; release still restores the original
    manager.release(PF, 7)
    assert nic.read(PF, 7) == VfState(index=7)


def test_vf_failed_first_configure_leaves_no_snapshot_fake_nic(
    nic: FakeVfConfigurator,
) -> None:
    manager = VfManager(nic)
    nic.fail(PF, 0, VfField.TRUST, errno.EOPNOTSUPP)
    with pytest.raises(VfUnsupported, match="trust"):
        manager.configure(PF, 0, FULL)
    assert manager.held() == ()
    assert nic.read(PF, 0) == VfState(index=0)


def test_vf_rollback_failure_is_reported_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    nic.fail(PF, 2, VfField.LINK_STATE, errno.EINVAL)
    nic.fail(PF, 2, VfField.TRUST, errno.EBUSY, after=1)  # the write works, its undo fails
    with pytest.raises(VfRollbackFailed) as caught:
        manager.configure(PF, 2, FULL)
    assert caught.value.fields["field"] == "trust"
    assert "Device or resource busy" in str(caught.value)


def test_vf_release_failure_keeps_snapshot_for_retry_fake_nic(
    nic: FakeVfConfigurator,
) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 3, FULL)
    nic.fail(PF, 3, VfField.LINK_STATE, errno.EOPNOTSUPP)
    with pytest.raises(VfUnsupported, match="link_state"):
        manager.release(PF, 3)
    # every other field was restored despite the refused one
    assert nic.read(PF, 3) == VfState(index=3, link_state=LinkState.DISABLE)
    assert manager.held() == ((PF, 3),)
    change = manager.release(PF, 3)
    assert change.written == (VfField.LINK_STATE,)
    assert nic.read(PF, 3) == VfState(index=3)


def test_vf_release_reports_all_failed_fields_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 3, FULL)
    nic.fail(PF, 3, VfField.MAC, errno.EPERM)
    nic.fail(PF, 3, VfField.TRUST, errno.EPERM)
    with pytest.raises(VfError) as caught:
        manager.release(PF, 3)
    assert caught.value.fields["field"] == "mac, trust"


def test_vf_rate_pair_checked_against_current_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    manager.configure(PF, 1, VfSettings(max_tx_rate=100))
    with pytest.raises(InvalidVfRate, match="above maximum 100 Mbit/s"):
        manager.configure(PF, 1, VfSettings(min_tx_rate=200))
    change = manager.configure(PF, 1, VfSettings(min_tx_rate=40))
    assert change.state.rate == TxRate(40, 100)  # setting min kept max (LP#1962844)


def test_vf_unknown_pf_and_index_fake_nic(nic: FakeVfConfigurator) -> None:
    manager = VfManager(nic)
    with pytest.raises(VfNotFound, match="No such device") as caught:
        manager.configure("eth9", 0, FULL)
    assert caught.value.fields["errno"] == errno.ENODEV
    with pytest.raises(VfNotFound, match=r"VF index 8 is not below the PF's VF count \(8\)"):
        manager.configure(PF, 8, FULL)
    assert manager.held() == ()


def test_vf_lock_serializes_one_vf_fake_nic() -> None:
    nic = FakeVfConfigurator(delay=0.005)
    nic.add_pf(PF, 4)
    manager = VfManager(nic)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for round_ in range(3):
                manager.configure(PF, 0, VfSettings(vlan=VlanTag(n * 10 + round_ + 1)))
                manager.configure(PF, n % 3 + 1, VfSettings(vlan=VlanTag(n + 1)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert nic.max_in_flight(PF, 0) == 1
    assert all(nic.max_in_flight(PF, vf) == 1 for vf in (1, 2, 3))
    # the final VLAN on VF 0 is one some thread really wrote last
    assert nic.read(PF, 0).vlan == nic.writes_for(PF, 0)[-1].value


def test_vf_without_manager_writes_overlap_fake_nic() -> None:
    # the control experiment: the fake really lets concurrent writes overlap, so the
    # previous test's max_in_flight == 1 is the manager's lock at work
    nic = FakeVfConfigurator(delay=0.02)
    nic.add_pf(PF, 1)
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait()
        nic.apply(PF, 0, VfSettings(vlan=VlanTag(n + 1)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert nic.max_in_flight(PF, 0) > 1


def test_vf_lock_lets_different_vfs_overlap_fake_nic() -> None:
    nic = FakeVfConfigurator(delay=0.05)
    nic.add_pf(PF, 4)
    manager = VfManager(nic)
    barrier = threading.Barrier(4)

    def worker(vf: int) -> None:
        barrier.wait()
        manager.configure(PF, vf, VfSettings(trust=True))

    threads = [threading.Thread(target=worker, args=(vf,)) for vf in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert nic.peak_in_flight > 1  # the lock is per VF, not one for the whole host
    assert all(nic.max_in_flight(PF, vf) == 1 for vf in range(4))
    assert manager.held() == tuple((PF, vf) for vf in range(4))
    assert all(nic.read(PF, vf).trust for vf in range(4))
