"""Pools: identical devices of one host, summarized with their free count.

A pool key is what a request can tell apart: vendor, product, device type, NUMA node, the
parent PF for VFs and vDPA devices, and the device's tags (physical network, trusted, ...).

Two choices differ from Nova (``nova/pci/stats.py``), on purpose:

- Nova keys every ``type-PCI`` device and every PF by its own address, so a host with eight
  identical GPUs has eight pools of one. Here identical PCI devices and PFs share one pool
  (``parent`` is None for them): the scheduler reasons about counts, and the fit picks the
  exact device. VFs keep one pool per parent PF because the PF/VF coupling and VF packing
  are decided per PF.
- All tags stay in the key (Nova drops ``resource_class`` and ``traits``): devices matched by
  one spec carry the same tags anyway, and keeping them lets a request match on any tag.

As in Nova, a PF, VF or vDPA device without a ``remote_managed`` tag is pooled with
``remote_managed="false"``, so port requests (which ask for ``remote_managed=False``) match.
Pools are ordered deterministically, fewest tags first (generic devices are used before
richer ones), then by vendor, product, type, NUMA node and parent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags

REMOTE_MANAGED: Final = "remote_managed"
LIVE_MIGRATABLE: Final = "live_migratable"
PHYSICAL_NETWORK: Final = "physical_network"
_REMOTE_MANAGED_DEFAULT: Final = frozenset({DeviceType.PF, DeviceType.VF, DeviceType.VDPA})
_TRUE: Final = frozenset({"1", "t", "true", "on", "y", "yes"})


def truthy(value: str | None) -> bool:
    """oslo's ``bool_from_string`` as Nova uses it for tag values."""
    return value is not None and value.strip().lower() in _TRUE


def pool_tags(device: Device) -> Tags:
    """The device's tags as pools and matching see them (Nova's remote_managed default)."""
    tags = device.tags
    if device.dev_type in _REMOTE_MANAGED_DEFAULT and REMOTE_MANAGED not in tags:
        return tags.with_(**{REMOTE_MANAGED: "false"})
    return tags


@dataclass(frozen=True, slots=True)
class PoolKey:
    vendor_id: str
    product_id: str
    dev_type: DeviceType
    numa_node: int | None
    #: the parent PF of VFs and vDPA devices; None for PCI devices and PFs
    parent: PciAddress | None
    tags: Tags
    # derived once, so the fit does not re-read tags for every candidate
    remote_managed: bool = field(init=False, compare=False, repr=False)
    live_migratable: str | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "remote_managed", truthy(self.tags.get(REMOTE_MANAGED)))
        object.__setattr__(self, "live_migratable", self.tags.get_folded(LIVE_MIGRATABLE))

    @classmethod
    def of(cls, device: Device) -> PoolKey:
        parent = device.parent if device.is_vf_like else None
        return cls(
            device.vendor_id,
            device.product_id,
            device.dev_type,
            device.numa_node,
            parent,
            pool_tags(device),
        )

    def matches(self, match: DeviceMatch) -> bool:
        return match.matches(self.vendor_id, self.product_id, self.dev_type, self.tags)

    def sort_key(self) -> tuple[object, ...]:
        numa = -1 if self.numa_node is None else self.numa_node
        parent = self.parent.routing_id if self.parent else -1
        domain = self.parent.domain if self.parent else -1
        return (
            len(self.tags),
            self.vendor_id,
            self.product_id,
            self.dev_type.value,
            numa,
            domain,
            parent,
            self.tags.items_tuple(),
        )


@dataclass(frozen=True, slots=True)
class Pool:
    key: PoolKey
    #: every present (not removed) device of the pool, by address
    members: tuple[PciAddress, ...]
    #: the available ones, by address: the order the fit picks them in
    free: tuple[PciAddress, ...]

    @property
    def count(self) -> int:
        return len(self.free)

    @property
    def total(self) -> int:
        return len(self.members)

    @property
    def in_use(self) -> int:
        """Members not available (held, blocked by a relative, or reserved)."""
        return len(self.members) - len(self.free)


def build_pools(devices: Iterable[Device]) -> tuple[Pool, ...]:
    """Group present devices into pools, in the deterministic pool order."""
    grouped: dict[PoolKey, list[Device]] = {}
    for device in devices:
        if device.state is not DeviceState.REMOVED:
            grouped.setdefault(PoolKey.of(device), []).append(device)
    pools = []
    for key in sorted(grouped, key=PoolKey.sort_key):
        members = sorted(grouped[key], key=lambda d: d.address)
        pools.append(
            Pool(
                key,
                tuple(d.address for d in members),
                tuple(d.address for d in members if d.state is DeviceState.AVAILABLE),
            )
        )
    return tuple(pools)


def refresh_pool(pool: Pool, devices: Mapping[PciAddress, Device]) -> Pool:
    """The same pool with its free devices re-read from ``devices`` (membership unchanged)."""
    available = DeviceState.AVAILABLE
    free = tuple(a for a in pool.members if devices[a].state is available)
    return Pool(pool.key, pool.members, free)


class KeySet:
    """The pool keys of a host, hashable with a cached hash, to memoize request matching.

    Hosts with identical hardware have equal key sets, so they share one cache entry.
    """

    __slots__ = ("_hash", "keys")

    def __init__(self, keys: tuple[PoolKey, ...]) -> None:
        self.keys = keys
        self._hash = hash(keys)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, KeySet):
            return NotImplemented
        return self._hash == other._hash and self.keys == other.keys


@lru_cache(maxsize=4096)
def matching_pools(keys: KeySet, alternatives: tuple[DeviceMatch, ...]) -> tuple[int, ...]:
    """Indexes of the pools that any alternative matches (Nova's spec stage, memoized)."""
    return tuple(
        i for i, key in enumerate(keys.keys) if any(key.matches(alt) for alt in alternatives)
    )
