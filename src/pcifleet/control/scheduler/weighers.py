"""The order candidate hosts are tried in.

A weigher turns a host's summary into a sort key; smaller keys are tried first and the host
name breaks ties, so the order is deterministic. Keys are compared as tuples (most important
term first) rather than summed with multipliers: each term says plainly what it prefers.

Two strategies, chosen by configuration:

- ``pack`` (the default): fill hosts before starting new ones. Guests with device requests go
  to the hosts with the fewest free devices (they stack, as Nova's ``PCIWeigher`` does), then
  the least free memory and vCPUs;
- ``spread``: guests with device requests go to the hosts with the most free devices, then the
  most free memory and vCPUs.

In both, guests without device requests go to the hosts with the fewest free devices first, so
device hosts stay free for the guests that need them (Nova's PCIWeigher, and bug 2144660 for
the cells). Which VF of which PF, and which of equally good devices, is the fit's business:
VFs are packed per PF and the least-featured devices are preferred there
(:class:`~pcifleet.domain.placement.FitOptions`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pcifleet.domain.errors import InvalidInput

if TYPE_CHECKING:
    from pcifleet.control.scheduler.index import HostSummary

#: a sort key; smaller is tried first
Weight = tuple[int, ...]


class Strategy(enum.StrEnum):
    PACK = "pack"
    SPREAD = "spread"


def parse_strategy(value: str) -> Strategy:
    try:
        return Strategy(value.strip().lower())
    except ValueError:
        allowed = ", ".join(Strategy)
        raise InvalidInput(
            f"weigher {value!r}: must be one of {allowed}", field="weigher", rule="enum"
        ) from None


class Weigher(Protocol):
    """What the index needs from a weigher: a key per host, per kind of guest."""

    @property
    def name(self) -> str: ...

    def weight(self, host: HostSummary, wants_devices: bool) -> Weight: ...


@dataclass(frozen=True, slots=True)
class CapacityWeigher:
    """Pack or spread on free devices, then free memory, then free vCPUs."""

    strategy: Strategy = Strategy.PACK

    @property
    def name(self) -> str:
        return str(self.strategy)

    def weight(self, host: HostSummary, wants_devices: bool) -> Weight:
        sign = 1 if self.strategy is Strategy.PACK else -1
        devices = host.free_devices * (sign if wants_devices else 1)
        return (devices, sign * host.free_memory_mb, sign * host.free_vcpus)


def weigher_for(strategy: Strategy | str) -> Weigher:
    chosen = strategy if isinstance(strategy, Strategy) else parse_strategy(strategy)
    return CapacityWeigher(chosen)
