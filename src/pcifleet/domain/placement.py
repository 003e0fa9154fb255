"""The vocabulary of a host fit: what an instance asks for and what the fit answers.

:class:`InstanceRequest` goes in; a :class:`Placement` (the chosen host NUMA cells, pinned CPUs
and the exact devices per device request) or a :class:`FitFailure` (which request failed, at
which stage, and how many candidates each stage removed) comes out. The fit itself lives in
:mod:`pcifleet.domain.fit`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pcifleet.domain.address import PciAddress
from pcifleet.domain.request import DeviceRequest, NumaPolicy, Requester


class CpuPolicy(enum.StrEnum):
    """``hw:cpu_policy``: shared vCPUs float (overcommitted); dedicated ones are pinned."""

    SHARED = "shared"
    DEDICATED = "dedicated"


class VfStrategy(enum.StrEnum):
    #: fill PFs that are already in use first, so whole PFs stay free
    PACK = "pack"
    #: use the PF with the most free VFs first (spreads load over the NICs)
    SPREAD = "spread"


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    vcpus: int
    memory_mb: int
    #: guest NUMA node count; None = no NUMA topology requested (see ``guest_nodes``)
    numa_nodes: int | None = None
    cpu_policy: CpuPolicy = CpuPolicy.SHARED
    hugepage_size_kb: int | None = None
    device_requests: tuple[DeviceRequest, ...] = ()
    #: the flavor's ``hw:pci_numa_affinity_policy``; a request's own policy wins; else legacy
    numa_policy: NumaPolicy | None = None
    #: the owner written on claimed devices; may stay empty for a dry run
    instance_id: str = ""

    @property
    def guest_nodes(self) -> int | None:
        """Guest NUMA node count; pinning or huge pages imply one node, as in Nova."""
        if self.numa_nodes is not None:
            return self.numa_nodes
        if self.cpu_policy is CpuPolicy.DEDICATED or self.hugepage_size_kb is not None:
            return 1
        return None

    def policy_of(self, request: DeviceRequest) -> NumaPolicy:
        return request.numa_policy or self.numa_policy or NumaPolicy.LEGACY


@dataclass(frozen=True, slots=True)
class FitOptions:
    vf_strategy: VfStrategy = VfStrategy.PACK


DEFAULT_OPTIONS = FitOptions()


@dataclass(frozen=True, slots=True)
class CellPlacement:
    """One guest NUMA node on one host cell."""

    guest_node: int
    host_cell: int
    vcpus: int
    memory_mb: int
    #: the host CPUs pinned for a dedicated guest; empty for shared
    pinned_cpus: frozenset[int] = frozenset()
    hugepage_size_kb: int | None = None
    #: huge pages of ``hugepage_size_kb`` taken; memory comes from them, not from the cell
    hugepages: int = 0

    @property
    def shared_vcpus(self) -> int:
        return 0 if self.pinned_cpus else self.vcpus


@dataclass(frozen=True, slots=True)
class Placement:
    instance_id: str
    #: guest node i -> host cell; empty when the guest has no NUMA topology
    cells: tuple[CellPlacement, ...]
    #: the exact devices of each device request, in request order
    devices: tuple[tuple[PciAddress, ...], ...]
    #: vCPUs and memory of a guest without NUMA topology (it floats over all cells)
    floating_vcpus: int = 0
    floating_memory_mb: int = 0

    @property
    def all_devices(self) -> tuple[PciAddress, ...]:
        return tuple(a for group in self.devices for a in group)

    @property
    def host_cells(self) -> tuple[int, ...]:
        return tuple(c.host_cell for c in self.cells)


class FitStage(enum.StrEnum):
    """Where a fit can fail, in the order the fit runs them (Nova §5.2 for devices)."""

    RESOURCES = "resources"
    SPEC = "spec"
    NUMA = "numa"
    UNREQUESTED_PF = "unrequested_pf"
    UNREQUESTED_VDPA = "unrequested_vdpa"
    UNREQUESTED_REMOTE_MANAGED = "unrequested_remote_managed"
    LIVE_MIGRATABLE = "live_migratable"


@dataclass(frozen=True, slots=True)
class StageCount:
    """Free candidate devices before and after one filter stage."""

    stage: FitStage
    before: int
    after: int

    @property
    def removed(self) -> int:
        return self.before - self.after


@dataclass(frozen=True, slots=True)
class FitFailure:
    stage: FitStage
    #: a human sentence an operator can act on
    message: str
    #: the device request that failed (index in ``InstanceRequest.device_requests``)
    request_index: int | None = None
    requester: Requester | None = None
    needed: int = 0
    #: every stage that ran for the failing request, up to and including the failing one
    stages: tuple[StageCount, ...] = ()
    #: the host cells the guest nodes were mapped to when it failed (None: no NUMA topology)
    host_cells: tuple[int, ...] | None = None

    def __str__(self) -> str:
        return self.message


FitResult = Placement | FitFailure
