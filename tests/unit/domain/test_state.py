"""The device state machine: the transition table, the PF/VF coupling, and its invariants."""

from __future__ import annotations

import re
from dataclasses import fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import InvalidTransition
from pcifleet.domain.state import (
    DERIVED,
    FOLLOWING,
    HELD,
    TRANSITIONS,
    Family,
    Operation,
    derived_state,
    transition,
)
from pcifleet.domain.tags import Tags

S = DeviceState
Op = Operation
PF_ADDR = PciAddress.parse("0000:18:00.0")


def pf(state: S = S.AVAILABLE, owner: str | None = None) -> Device:
    return Device(PF_ADDR, "8086", "1572", DeviceType.PF, numa_node=0, state=state, owner=owner)


def vf(i: int, state: S = S.AVAILABLE, owner: str | None = None) -> Device:
    return Device(
        PF_ADDR.offset(16 + i),
        "8086",
        "154c",
        DeviceType.VF,
        numa_node=0,
        parent=PF_ADDR,
        vf_index=i,
        state=state,
        owner=owner,
    )


def family(n_vfs: int = 2) -> Family:
    return Family(pf(), tuple(vf(i) for i in range(n_vfs)))


def states(fam: Family) -> tuple[S, ...]:
    return tuple(d.state for d in fam.members)


# -- the table, on a lone device ---------------------------------------------------------------


@pytest.mark.parametrize("op", list(Operation))
@pytest.mark.parametrize("state", list(DeviceState))
def test_transition_table_on_a_lone_device(op: Operation, state: DeviceState) -> None:
    gpu = Device(
        PciAddress.parse("0000:4a:00.0"),
        "10de",
        "2330",
        DeviceType.PCI,
        state=state,
        owner="vm1" if state in HELD else None,
    )
    lone = Family(gpu)
    expected = TRANSITIONS.get((op, state))
    if expected is None:
        with pytest.raises(InvalidTransition) as err:
            transition(lone, gpu.address, op, "vm1")
        assert f"cannot {op}: PCI device 0000:4a:00.0 is {state} instead of" in str(err.value)
        assert err.value.fields["operation"] == str(op)
        assert err.value.code == "pcifleet.device.invalid_transition"
        return
    after = transition(lone, gpu.address, op, "vm1").find(gpu.address)
    assert after.state is (S.AVAILABLE if expected == DERIVED else expected)
    assert (after.owner == "vm1") is (after.state in HELD)


@pytest.mark.parametrize(
    ("op", "state", "hope"),
    [
        (Op.CLAIM, S.ALLOCATED, "available"),
        (Op.ALLOCATE, S.RESERVED, "available or claimed"),
        (Op.FREE, S.AVAILABLE, "claimed or allocated"),
        (Op.UNRESERVE, S.AVAILABLE, "reserved"),
        (Op.RESTORE, S.AVAILABLE, "removed"),
    ],
)
def test_invalid_status_uses_novas_wording(op: Operation, state: S, hope: str) -> None:
    dev = replace(vf(0), state=state, owner="vm1" if state in HELD else None)
    with pytest.raises(InvalidTransition, match=f"is {state} instead of {hope}$"):
        transition(Family(None, (dev,)), dev.address, op, "vm1")


def test_claim_needs_an_owner() -> None:
    fam = family()
    with pytest.raises(InvalidTransition, match="needs an owning instance"):
        transition(fam, vf(0).address, Op.CLAIM)


@pytest.mark.parametrize("op", [Op.ALLOCATE, Op.FREE])
def test_owner_mismatch_is_refused(op: Operation) -> None:
    fam = transition(family(), vf(0).address, Op.CLAIM, "vm1")
    with pytest.raises(InvalidTransition, match="is owned by vm1 instead of vm2"):
        transition(fam, vf(0).address, op, "vm2")


def test_free_without_owner_frees_whatever_holds_it() -> None:
    fam = transition(family(), vf(0).address, Op.ALLOCATE, "vm1")
    fam = transition(fam, vf(0).address, Op.FREE)
    assert states(fam) == (S.AVAILABLE, S.AVAILABLE, S.AVAILABLE)


# -- the PF/VF coupling ------------------------------------------------------------------------

V0, V1 = vf(0).address, vf(1).address
A, C, AL, UC, UA, R, RM = (
    S.AVAILABLE,
    S.CLAIMED,
    S.ALLOCATED,
    S.UNCLAIMABLE,
    S.UNAVAILABLE,
    S.RESERVED,
    S.REMOVED,
)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(V0, Op.CLAIM)], (UC, C, A)),
        ([(V0, Op.ALLOCATE)], (UA, AL, A)),
        ([(V0, Op.CLAIM), (V0, Op.ALLOCATE)], (UA, AL, A)),
        ([(V0, Op.CLAIM), (V0, Op.FREE)], (A, A, A)),
        # the PF returns to available only when every other VF is free
        ([(V0, Op.CLAIM), (V1, Op.ALLOCATE), (V0, Op.FREE)], (UA, A, AL)),
        ([(V0, Op.CLAIM), (V1, Op.ALLOCATE), (V1, Op.FREE)], (UC, C, A)),
        ([(V0, Op.CLAIM), (V1, Op.CLAIM), (V0, Op.FREE), (V1, Op.FREE)], (A, A, A)),
        ([(PF_ADDR, Op.CLAIM)], (C, UC, UC)),
        ([(PF_ADDR, Op.ALLOCATE)], (AL, UA, UA)),
        ([(PF_ADDR, Op.CLAIM), (PF_ADDR, Op.ALLOCATE), (PF_ADDR, Op.FREE)], (A, A, A)),
        # an operator's reserved VF keeps the PF from being handed out whole ...
        ([(V0, Op.RESERVE)], (UC, R, A)),
        ([(V0, Op.RESERVE), (V0, Op.UNRESERVE)], (A, A, A)),
        # ... but a reserved PF keeps serving its VFs
        ([(PF_ADDR, Op.RESERVE)], (R, A, A)),
        ([(PF_ADDR, Op.RESERVE), (V0, Op.CLAIM), (PF_ADDR, Op.UNRESERVE)], (UC, C, A)),
        # a VF blocked by its PF can still be reserved, and stays reserved when the PF frees
        ([(PF_ADDR, Op.CLAIM), (V0, Op.RESERVE), (PF_ADDR, Op.FREE)], (UC, R, A)),
        # removal: a removed VF no longer blocks; a restored one follows its PF again
        ([(V0, Op.RESERVE), (V0, Op.REMOVE)], (A, RM, A)),
        ([(V0, Op.REMOVE), (PF_ADDR, Op.ALLOCATE), (V0, Op.RESTORE)], (AL, UA, UA)),
        ([(PF_ADDR, Op.CLAIM), (V0, Op.REMOVE), (PF_ADDR, Op.FREE)], (A, RM, A)),
    ],
)
def test_coupling(steps: list[tuple[PciAddress, Operation]], expected: tuple[S, ...]) -> None:
    fam = family()
    for address, op in steps:
        fam = transition(fam, address, op, "vm1" if op in (Op.CLAIM, Op.ALLOCATE) else None)
    assert states(fam) == expected


@pytest.mark.parametrize(
    ("steps", "address", "op", "message"),
    [
        ([(V0, Op.CLAIM)], PF_ADDR, Op.CLAIM, "is unclaimable instead of available"),
        ([(V0, Op.ALLOCATE)], PF_ADDR, Op.ALLOCATE, "is unavailable instead of available"),
        ([(PF_ADDR, Op.CLAIM)], V0, Op.CLAIM, "is unclaimable instead of available"),
        ([(V0, Op.CLAIM)], V0, Op.REMOVE, "is claimed instead of available or unclaimable"),
    ],
)
def test_relatives_block(
    steps: list[tuple[PciAddress, Operation]], address: PciAddress, op: Operation, message: str
) -> None:
    fam = family()
    for step_address, step_op in steps:
        fam = transition(fam, step_address, step_op, "vm1")
    with pytest.raises(InvalidTransition, match=message):
        transition(fam, address, op, "vm2")


def test_inconsistent_stored_states_get_novas_relative_errors() -> None:
    # a PF stored as available while one of its VFs is claimed (Nova bug 1969496's shape)
    broken = Family(pf(), (vf(0, S.CLAIMED, "vm1"), vf(1)))
    with pytest.raises(
        InvalidTransition, match=re.escape("Not all Virtual Functions of PF 0000:18:00.0 are free.")
    ):
        transition(broken, PF_ADDR, Op.CLAIM, "vm2")
    broken = Family(pf(S.ALLOCATED, "vm1"), (vf(0), vf(1)))
    with pytest.raises(
        InvalidTransition,
        match=re.escape("Physical Function 0000:18:00.0, related to VF 0000:18:02.0 is allocated"),
    ):
        transition(broken, V0, Op.CLAIM, "vm2")


def test_vfs_without_a_tracked_pf_couple_with_nothing() -> None:
    orphans = Family(None, (vf(0), vf(1)))
    after = transition(orphans, V0, Op.ALLOCATE, "vm1")
    assert states(after) == (AL, A)


def test_unknown_address_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="not part of this family"):
        transition(family(), PciAddress.parse("0000:00:01.0"), Op.CLAIM, "vm1")


# -- properties --------------------------------------------------------------------------------

OPS = st.sampled_from(list(Operation))
OWNERS = st.sampled_from(["vm1", "vm2", None])


@st.composite
def histories(draw: st.DrawFn) -> tuple[Family, list[tuple[int, Operation, str | None]]]:
    n_vfs = draw(st.integers(0, 4))
    steps = draw(st.lists(st.tuples(st.integers(0, n_vfs), OPS, OWNERS), max_size=25))
    return family(n_vfs), steps


def run(fam: Family, steps: list[tuple[int, Operation, str | None]]) -> list[Family]:
    """Every family reached by the steps that the machine accepts."""
    seen = [fam]
    for index, op, owner in steps:
        try:
            fam = transition(fam, fam.members[index].address, op, owner)
        except InvalidTransition:
            continue
        seen.append(fam)
    return seen


def assert_consistent(fam: Family) -> None:
    head = fam.head
    assert head is not None
    vf_states = {d.state for d in fam.children}
    # a PF and one of its VFs are never both claimed/allocated
    assert not (head.state in HELD and vf_states & HELD)
    for device in fam.members:
        assert (device.owner is not None) is (device.state in HELD)
        if device.state in FOLLOWING:
            assert device.state is derived_state(device, fam)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_every_reachable_family_is_consistent(
    history: tuple[Family, list[tuple[int, Operation, str | None]]],
) -> None:
    for fam in run(*history):
        assert_consistent(fam)


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_free_restores_the_exact_prior_states(
    history: tuple[Family, list[tuple[int, Operation, str | None]]], data: st.DataObject
) -> None:
    fam = run(*history)[-1]
    index = data.draw(st.integers(0, len(fam.members) - 1))
    device = fam.members[index]
    pairs = [(Op.CLAIM, Op.FREE), (Op.ALLOCATE, Op.FREE), (Op.RESERVE, Op.UNRESERVE)]
    take, give = data.draw(st.sampled_from(pairs))
    if device.state is not S.AVAILABLE:
        return
    taken = transition(fam, device.address, take, "vm9")
    assert_consistent(taken)
    assert transition(taken, device.address, give, "vm9") == fam


def test_with_state_copies_every_other_field() -> None:
    """The state machine's positional copy must stay a ``replace`` of state and owner: a field
    added to Device fails here until ``with_state`` passes it on."""
    assert [f.name for f in fields(Device)] == [
        "address",
        "vendor_id",
        "product_id",
        "dev_type",
        "class_code",
        "numa_node",
        "parent",
        "vf_index",
        "driver",
        "netdevs",
        "tags",
        "state",
        "owner",
    ]
    device = Device(
        PF_ADDR.offset(19),
        "8086",
        "154c",
        DeviceType.VF,
        "020000",
        1,
        PF_ADDR,
        3,
        "iavf",
        ("ens1f0v3",),
        Tags({"physical_network": "physnet1"}),
    )
    copy = device.with_state(S.ALLOCATED, "vm1")
    assert copy == replace(device, state=S.ALLOCATED, owner="vm1")
    assert copy.with_state(S.AVAILABLE) == device
