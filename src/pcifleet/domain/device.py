"""Devices: what one PCI function is, and which state it is in.

A :class:`Device` is a frozen record. Facts come from discovery (address, ids, class, NUMA
node, parent PF and VF index, driver, netdevs); ``tags`` come from the device spec that
matched it; ``state`` and ``owner`` come from the controller. State changes go through
:mod:`pcifleet.domain.state` (one transition table with the PF/VF coupling) and produce new
records with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pcifleet.domain.address import PciAddress
from pcifleet.domain.tags import EMPTY_TAGS, Tags


class DeviceType(enum.StrEnum):
    """Nova's device types; ``type-PF`` means SR-IOV capable (``sriov_totalvfs`` > 0)."""

    PCI = "type-PCI"
    PF = "type-PF"
    VF = "type-VF"
    VDPA = "vdpa"


class DeviceState(enum.StrEnum):
    AVAILABLE = "available"
    CLAIMED = "claimed"
    ALLOCATED = "allocated"
    #: blocked because a relative (its PF, or one of its VFs) is claimed
    UNCLAIMABLE = "unclaimable"
    #: blocked because a relative is allocated
    UNAVAILABLE = "unavailable"
    #: held out of scheduling by an operator
    RESERVED = "reserved"
    #: gone from the host
    REMOVED = "removed"


def is_physical_function(sriov_totalvfs: int | None) -> bool:
    """The one definition of "is a PF": the kernel reports ``sriov_totalvfs`` > 0."""
    return sriov_totalvfs is not None and sriov_totalvfs > 0


@dataclass(frozen=True, slots=True)
class Device:
    address: PciAddress
    vendor_id: str
    product_id: str
    dev_type: DeviceType
    #: 24-bit class code as 6 lower-case hex digits ("020000" = Ethernet), None when unknown
    class_code: str | None = None
    #: None when the kernel reports -1 (unknown)
    numa_node: int | None = None
    parent: PciAddress | None = None
    vf_index: int | None = None
    driver: str | None = None
    netdevs: tuple[str, ...] = ()
    tags: Tags = field(default=EMPTY_TAGS)
    state: DeviceState = DeviceState.AVAILABLE
    #: the instance (id) holding the device when claimed or allocated
    owner: str | None = None

    @property
    def is_pf(self) -> bool:
        return self.dev_type is DeviceType.PF

    def with_state(self, state: DeviceState, owner: str | None = None) -> Device:
        """This device in ``state``, held by ``owner`` (the state machine's copy).

        ``dataclasses.replace`` would do, at twice the cost; a PF's claim copies its 64 VFs
        and every other controller process replays it.
        """
        return Device(
            self.address,
            self.vendor_id,
            self.product_id,
            self.dev_type,
            self.class_code,
            self.numa_node,
            self.parent,
            self.vf_index,
            self.driver,
            self.netdevs,
            self.tags,
            state,
            owner,
        )

    @property
    def is_vf_like(self) -> bool:
        """VFs and vDPA devices: both hang off a parent PF."""
        return self.dev_type in (DeviceType.VF, DeviceType.VDPA)

    @property
    def pci_vendor_info(self) -> str:
        return f"{self.vendor_id}:{self.product_id}"
