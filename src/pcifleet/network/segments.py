"""Network segments: flat, VLAN and VXLAN, and the allocation of VLAN ids and VNIs.

A network has one or several segments (Neutron's ``multi-provider``): for example a VXLAN
segment for the overlay and a VLAN segment on ``physnet1`` for SR-IOV guests. SR-IOV ports can
only use a flat or VLAN segment (a VF sits on a physical NIC; Neutron's ``sriovnicswitch``
refuses every other type), so :func:`device_segment` picks the first one.

Rules (``neutron_lib/constants.py``, ML2 type drivers):

- flat: a physical network, no segmentation id; the VIF's VLAN is ``0``;
- vlan: a physical network and a VLAN id 1..4094; without an id one is allocated from the
  physical network's ranges (Neutron's ``network_vlan_ranges``, ``physnet:min:max``);
- vxlan: no physical network, a VNI 1..2^24-1; without one it is allocated from the VNI ranges
  (``vni_ranges``, ``min:max``).

Allocation is pure here: the caller gives the ids already used and gets the lowest free one;
the database's unique segment key makes two concurrent allocations of one id fail cleanly.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Final

from pcifleet.domain.errors import InvalidNetwork
from pcifleet.network.errors import NetworkExhausted

MAX_VLAN: Final = 4094
MAX_VNI: Final = 2**24 - 1
#: the VLAN a flat segment reports in vif details (Neutron's ``FLAT_VLAN``)
FLAT_VLAN: Final = 0


class NetworkType(enum.StrEnum):
    FLAT = "flat"
    VLAN = "vlan"
    VXLAN = "vxlan"


def parse_network_type(value: str) -> NetworkType:
    try:
        return NetworkType(value)
    except ValueError:
        accepted = ", ".join(t.value for t in NetworkType)
        raise InvalidNetwork(
            f"network_type {value!r} is not one of: {accepted}", field="network_type", rule="enum"
        ) from None


@dataclass(frozen=True, slots=True)
class Segment:
    """One fully specified segment (its segmentation id allocated if it was not given)."""

    network_type: NetworkType
    physical_network: str | None = None
    segmentation_id: int | None = None

    @property
    def key(self) -> str:
        """Unique across the whole deployment: two networks never share a segment."""
        if self.network_type is NetworkType.FLAT:
            return f"flat:{self.physical_network}"
        if self.network_type is NetworkType.VLAN:
            return f"vlan:{self.physical_network}:{self.segmentation_id}"
        return f"vxlan:{self.segmentation_id}"

    @property
    def carries_devices(self) -> bool:
        """Flat and VLAN segments can carry SR-IOV ports; VXLAN cannot."""
        return self.network_type in (NetworkType.FLAT, NetworkType.VLAN)

    @property
    def vlan(self) -> int | None:
        """The VLAN a VF on this segment uses (0 for flat), None for VXLAN."""
        if self.network_type is NetworkType.FLAT:
            return FLAT_VLAN
        if self.network_type is NetworkType.VLAN:
            return self.segmentation_id
        return None


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """A segment as asked for: the segmentation id may be left out to be allocated."""

    network_type: NetworkType
    physical_network: str | None = None
    segmentation_id: int | None = None


def _bad(detail: str, field: str, rule: str) -> InvalidNetwork:
    return InvalidNetwork(detail, field=field, rule=rule)


def check_spec(spec: SegmentSpec) -> SegmentSpec:
    """Refuse a segment whose fields do not fit its type (names the field and the rule)."""
    kind, physnet, seg = spec.network_type, spec.physical_network, spec.segmentation_id
    if kind is NetworkType.VXLAN:
        if physnet is not None:
            raise _bad("a vxlan segment has no physical network", "physical_network", "vxlan")
        if seg is not None and not 1 <= seg <= MAX_VNI:
            raise _bad(f"VNI {seg} is not in 1..{MAX_VNI}", "segmentation_id", "range")
        return spec
    if not physnet:
        raise _bad(f"a {kind} segment needs a physical network", "physical_network", "required")
    if kind is NetworkType.FLAT and seg is not None:
        raise _bad("a flat segment has no segmentation id", "segmentation_id", "flat")
    if kind is NetworkType.VLAN and seg is not None and not 1 <= seg <= MAX_VLAN:
        raise _bad(f"VLAN {seg} is not in 1..{MAX_VLAN}", "segmentation_id", "range")
    return spec


def check_specs(specs: Sequence[SegmentSpec]) -> tuple[SegmentSpec, ...]:
    """At least one segment, each valid, no fully specified duplicate."""
    if not specs:
        raise _bad("a network needs at least one segment", "segments", "required")
    seen: set[SegmentSpec] = set()
    for spec in specs:
        check_spec(spec)
        if spec in seen and (spec.segmentation_id is not None or spec.network_type == "flat"):
            raise _bad(f"duplicate segment {spec}", "segments", "duplicate")
        seen.add(spec)
    return tuple(specs)


# --- ranges --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdRange:
    low: int
    high: int


def _range(text: str, limit: int, option: str, entry: str) -> IdRange:
    low_text, _, high_text = text.partition(":")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise InvalidNetwork(
            f"{option} entry {entry!r}: expected min:max integers", field=option, rule="format"
        ) from None
    if not 1 <= low <= high <= limit:
        raise InvalidNetwork(
            f"{option} entry {entry!r}: need 1 <= min <= max <= {limit}",
            field=option,
            rule="range",
        )
    return IdRange(low, high)


@dataclass(frozen=True, slots=True)
class VlanRanges:
    """Neutron's ``network_vlan_ranges``: ``physnet1:100:199,physnet1:300:399,physnet2``.

    A physical network named alone may carry flat/VLAN segments with explicit ids but has no
    range to allocate from.
    """

    ranges: tuple[tuple[str, tuple[IdRange, ...]], ...] = ()

    @classmethod
    def parse(cls, value: str) -> VlanRanges:
        found: dict[str, list[IdRange]] = {}
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            physnet, sep, rest = entry.partition(":")
            if not physnet:
                raise InvalidNetwork(
                    f"network_vlan_ranges entry {entry!r}: empty physical network",
                    field="network_vlan_ranges",
                    rule="format",
                )
            bucket = found.setdefault(physnet, [])
            if sep:
                bucket.append(_range(rest, MAX_VLAN, "network_vlan_ranges", entry))
        return cls(tuple((p, tuple(r)) for p, r in sorted(found.items())))

    def of(self, physnet: str) -> tuple[IdRange, ...]:
        return dict(self.ranges).get(physnet, ())


def parse_vni_ranges(value: str) -> tuple[IdRange, ...]:
    """Neutron's ``vni_ranges``: ``1:1000,5000:6000``."""
    entries = (e.strip() for e in value.split(","))
    return tuple(_range(e, MAX_VNI, "vni_ranges", e) for e in entries if e)


def lowest_free(ranges: Sequence[IdRange], used: Container[int]) -> int | None:
    for one in ranges:
        for candidate in range(one.low, one.high + 1):
            if candidate not in used:
                return candidate
    return None


def allocate(
    spec: SegmentSpec,
    vlan_ranges: VlanRanges,
    vni_ranges: Sequence[IdRange],
    used: Container[int],
) -> Segment:
    """The segment of ``spec``, its id allocated (lowest free in the ranges) when absent.

    ``used`` holds the ids already taken on the same physical network (VLAN) or globally (VNI).
    """
    spec = check_spec(spec)
    kind, physnet = spec.network_type, spec.physical_network
    if kind is NetworkType.FLAT or spec.segmentation_id is not None:
        return Segment(kind, physnet, spec.segmentation_id)
    if kind is NetworkType.VLAN:
        assert physnet is not None
        chosen = lowest_free(vlan_ranges.of(physnet), used)
        where = f"the VLAN ranges of {physnet}"
    else:
        chosen = lowest_free(vni_ranges, used)
        where = "the VNI ranges"
    if chosen is None:
        raise NetworkExhausted(
            f"no free {kind} segmentation id left in {where}", field="segmentation_id"
        )
    return Segment(kind, physnet, chosen)


def device_segment(segments: Sequence[Segment]) -> Segment | None:
    """The segment an SR-IOV port binds to: the first flat or VLAN one (None: overlay only)."""
    return next((s for s in segments if s.carries_devices), None)
