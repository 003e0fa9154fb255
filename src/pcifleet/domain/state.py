"""The device state machine: one transition table, with the PF/VF coupling.

A PF and its VFs exclude each other (DESIGN §3, Nova's ``PciDevice``): passing a PF through
destroys its VFs, and a VF in use needs its PF to stay with the host. Transitions therefore
operate on a :class:`Family` — a PF with its VFs, or a lone device — and return a new family
of frozen :class:`~pcifleet.domain.device.Device` records.

:data:`TRANSITIONS` is the whole table for the device operated on (operation x from-state ->
to-state). A to-state of :data:`DERIVED` means "not held any more": the device becomes
available unless a relative blocks it, which :func:`derived_state` decides. The relatives of
the device are then re-derived with the same rule, so the coupling is written once:

- a VF is ``unclaimable`` while its PF is claimed and ``unavailable`` while it is allocated;
- a PF is ``unavailable`` while any VF is allocated, else ``unclaimable`` while any VF is
  claimed or reserved (an operator holding a VF, e.g. for a DHCP agent, must not see its PF
  handed out whole), else ``available`` — so it returns to available only when every VF is free;
- a reserved PF does not block its VFs: the PF still serves its VFs while it stays on the host.

Blocked relatives that are reserved or removed keep their state. Errors reuse Nova's texts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState
from pcifleet.domain.errors import InvalidTransition


class Operation(enum.StrEnum):
    CLAIM = "claim"
    ALLOCATE = "allocate"
    FREE = "free"
    RESERVE = "reserve"
    UNRESERVE = "unreserve"
    REMOVE = "remove"
    #: a removed device is reported again by its host
    RESTORE = "restore"


#: to-state meaning "available unless a relative blocks it" (see :func:`derived_state`)
DERIVED: Final = "derived"
Target = DeviceState | Literal["derived"]

_S = DeviceState
_O = Operation

#: The one transition table: (operation, from-state) -> to-state. Anything else is invalid.
TRANSITIONS: Final[dict[tuple[Operation, DeviceState], Target]] = {
    (_O.CLAIM, _S.AVAILABLE): _S.CLAIMED,
    (_O.ALLOCATE, _S.AVAILABLE): _S.ALLOCATED,
    (_O.ALLOCATE, _S.CLAIMED): _S.ALLOCATED,
    (_O.FREE, _S.CLAIMED): DERIVED,
    (_O.FREE, _S.ALLOCATED): DERIVED,
    (_O.RESERVE, _S.AVAILABLE): _S.RESERVED,
    (_O.RESERVE, _S.UNCLAIMABLE): _S.RESERVED,
    (_O.RESERVE, _S.UNAVAILABLE): _S.RESERVED,
    (_O.UNRESERVE, _S.RESERVED): DERIVED,
    (_O.REMOVE, _S.AVAILABLE): _S.REMOVED,
    (_O.REMOVE, _S.UNCLAIMABLE): _S.REMOVED,
    (_O.REMOVE, _S.UNAVAILABLE): _S.REMOVED,
    (_O.REMOVE, _S.RESERVED): _S.REMOVED,
    (_O.RESTORE, _S.REMOVED): DERIVED,
}

#: states held by an instance: the owner is set exactly in these
HELD: Final = frozenset({_S.CLAIMED, _S.ALLOCATED})
#: states that follow the relatives (re-derived after every transition in the family)
FOLLOWING: Final = frozenset({_S.AVAILABLE, _S.UNCLAIMABLE, _S.UNAVAILABLE})
_NEEDS_OWNER: Final = frozenset({_O.CLAIM, _O.ALLOCATE})
_TAKES: Final = frozenset({_O.CLAIM, _O.ALLOCATE})


@dataclass(frozen=True, slots=True)
class Family:
    """A PF with its VFs, a lone device (``head`` only), or VFs whose PF is not tracked.

    Only a PF head couples with its children; ``children`` are VF-like devices (VF, vDPA).
    """

    head: Device | None
    children: tuple[Device, ...] = ()

    @property
    def members(self) -> tuple[Device, ...]:
        return self.children if self.head is None else (self.head, *self.children)

    def find(self, address: PciAddress) -> Device:
        return self.members[self.position(address)]

    def position(self, address: PciAddress) -> int:
        """Index of the device at ``address`` in ``members``."""
        for i, device in enumerate(self.members):
            if device.address == address:
                return i
        raise InvalidTransition(f"PCI device {address} is not part of this family")

    def with_member(self, position: int, device: Device) -> Family:
        """The family with ``members[position]`` replaced by ``device``."""
        if self.head is None:
            children = self.children
            return Family(None, (*children[:position], device, *children[position + 1 :]))
        if position == 0:
            return Family(device, self.children)
        children = self.children
        k = position - 1
        return Family(self.head, (*children[:k], device, *children[k + 1 :]))

    def relatives(self, device: Device) -> tuple[Device, ...]:
        """The devices ``device`` excludes: a PF's children, or a VF's PF."""
        head = self.head
        if head is None or not head.is_pf:
            return ()
        if device.address == head.address:
            return self.children
        return (head,)


#: a VF follows its PF: PF state -> VF state (anything else: available)
_VF_FOLLOWS: Final = {_S.ALLOCATED: _S.UNAVAILABLE, _S.CLAIMED: _S.UNCLAIMABLE}


def derived_state(device: Device, family: Family) -> DeviceState:
    """The state of a present device nobody holds, given what its relatives are doing."""
    relatives = family.relatives(device)
    if not relatives:
        return _S.AVAILABLE
    if not device.is_pf:
        return _VF_FOLLOWS.get(relatives[0].state, _S.AVAILABLE)
    states = {vf.state for vf in relatives}
    if _S.ALLOCATED in states:
        return _S.UNAVAILABLE
    if _S.CLAIMED in states or _S.RESERVED in states:
        return _S.UNCLAIMABLE
    return _S.AVAILABLE


def allowed_from(op: Operation) -> tuple[DeviceState, ...]:
    """The states ``op`` may start from, in table order (for messages)."""
    return tuple(state for (o, state) in TRANSITIONS if o is op)


def transition(
    family: Family, address: PciAddress, op: Operation, owner: str | None = None
) -> Family:
    """Apply ``op`` to the device at ``address`` and re-derive its relatives.

    ``owner`` is the instance for claim/allocate (required) and, when given, checked for free.
    Raises :class:`InvalidTransition` naming the device, its state and the operation.
    """
    position = family.position(address)
    device = family.members[position]
    target = _target(device, op, owner)
    _check_relatives(family, device, op)
    new_owner = owner if op in _TAKES else device.owner if target in HELD else None
    if target == DERIVED:
        # a device's derived state depends on its relatives only, never on its own state
        target = derived_state(device, family)
    assert isinstance(target, DeviceState)
    changed = device.with_state(target, new_owner)
    return _rederive_relatives(family.with_member(position, changed), changed)


def _target(device: Device, op: Operation, owner: str | None) -> Target:
    target = TRANSITIONS.get((op, device.state))
    if target is None:
        hope = " or ".join(allowed_from(op))
        raise InvalidTransition(
            f"cannot {op}: PCI device {device.address} is {device.state} instead of {hope}",
            device=str(device.address),
            state=str(device.state),
            operation=str(op),
        )
    if op in _NEEDS_OWNER and not owner:
        raise InvalidTransition(
            f"cannot {op}: PCI device {device.address} needs an owning instance",
            device=str(device.address),
            state=str(device.state),
            operation=str(op),
        )
    held_by_other = device.state in HELD and owner is not None and device.owner != owner
    if held_by_other and op in (_O.ALLOCATE, _O.FREE):
        raise InvalidTransition(
            f"cannot {op}: PCI device {device.address} is owned by {device.owner} "
            f"instead of {owner}",
            device=str(device.address),
            state=str(device.state),
            operation=str(op),
        )
    return target


def _check_relatives(family: Family, device: Device, op: Operation) -> None:
    """Nova's relative checks; they only fire when the stored states are inconsistent."""
    if op not in _TAKES:
        return
    relatives = family.relatives(device)
    if device.is_pf and any(vf.state in HELD or vf.state is _S.RESERVED for vf in relatives):
        raise InvalidTransition(
            f"cannot {op}: Not all Virtual Functions of PF {device.address} are free.",
            device=str(device.address),
            state=str(device.state),
            operation=str(op),
        )
    if not device.is_pf and relatives and relatives[0].state in HELD:
        pf = relatives[0]
        raise InvalidTransition(
            f"cannot {op}: Physical Function {pf.address}, related to VF {device.address} "
            f"is {pf.state} instead of available or unclaimable or unavailable",
            device=str(device.address),
            state=str(device.state),
            operation=str(op),
        )


def _rederive_relatives(family: Family, changed: Device) -> Family:
    relatives = family.relatives(changed)
    rederived = tuple(_rederived(relative, family) for relative in relatives)
    if all(new is old for new, old in zip(rederived, relatives, strict=True)):
        return family  # no coupling, or nothing followed
    head = family.head
    assert head is not None
    if changed.address == head.address:  # the PF changed: its VFs follow
        return Family(head, rederived)
    return Family(rederived[0], family.children)  # a VF changed: its PF follows


def _rederived(relative: Device, family: Family) -> Device:
    """``relative`` with the state its relatives give it (as it is, unless it follows them)."""
    if relative.state not in FOLLOWING:
        return relative
    state = derived_state(relative, family)
    return relative if state is relative.state else relative.with_state(state, relative.owner)
