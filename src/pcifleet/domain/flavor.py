"""Flavors: the size of an instance and the devices it asks for, read from Nova's extra specs.

A :class:`Flavor` holds parsed fields; :meth:`Flavor.from_extra_specs` reads them from the extra
specs an operator coming from Nova already has:

==============================  ===========================================================
extra spec                      field
==============================  ===========================================================
``hw:numa_nodes``               ``numa_nodes`` (guest NUMA node count, integer >= 1)
``hw:cpu_policy``               ``cpu_policy`` (``shared`` or ``dedicated``)
``hw:mem_page_size``            ``page_size``: ``small`` | ``large`` | ``any`` | KiB (an
                                integer, or a size with unit such as ``2MB``, ``1GiB``)
``hw:pci_numa_affinity_policy`` ``pci_numa_policy``
``pci_passthrough:alias``       ``device_groups``: ``gpu:1,qat:2`` (group name, count)
==============================  ===========================================================

The internal ``pci_passthrough:alias`` parser is Nova's: items split on ``,``, each on ``:``,
the name stripped, the count an integer (so ``"a: 2"`` is accepted). The API-level validator
:func:`validate_extra_specs` applies Nova's stricter extra-spec validation (microversion 2.86+),
which rejects ``"a: 2"``.

:func:`device_requests_for_flavor` turns the flavor's group counts into device requests: one
request per listed item (the same group listed twice gives two requests), with the NUMA policy
of, in order of precedence, the flavor (or the image, which may not contradict it), the group,
else legacy. Ports take precedence over both (see :mod:`pcifleet.domain.vnic`).

Private groups: a group owned by another project is reported exactly like a missing one
(``UnknownGroup``: "PCI alias <name> is not defined"), so a tenant cannot probe which private
groups exist; the API maps it to 400 as Nova does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pcifleet.domain.errors import InvalidFlavor, NumaPolicyConflict, UnknownGroup
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.placement import CpuPolicy
from pcifleet.domain.request import (
    DeviceRequest,
    NumaPolicy,
    Requester,
    RequesterKind,
    RequestIdFactory,
    new_request_id,
)
from pcifleet.domain.tags import EMPTY_TAGS, Tags

PCI_ALIAS_SPEC: Final = "pci_passthrough:alias"
PCI_NUMA_SPEC: Final = "hw:pci_numa_affinity_policy"
IMAGE_PCI_NUMA_PROPERTY: Final = "hw_pci_numa_affinity_policy"
CPU_POLICY_SPEC: Final = "hw:cpu_policy"
NUMA_NODES_SPEC: Final = "hw:numa_nodes"
PAGE_SIZE_SPEC: Final = "hw:mem_page_size"

#: Nova's API validator pattern for ``pci_passthrough:alias`` (matched in full)
PCI_ALIAS_PATTERN: Final = r"[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*"
#: Nova's API validator pattern for ``hw:mem_page_size`` (matched in full)
PAGE_SIZE_PATTERN: Final = r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)"

_SIZE_RE: Final = re.compile(r"([0-9]+)([KMGT]i?)?(b|bit|B)")
_UNIT_EXPONENT: Final = {"K": 1, "M": 2, "G": 3, "T": 4}
_COUNT_RE: Final = re.compile(r"\s*\d+\s*")


class PageSizeKind(enum.StrEnum):
    """Nova's page size keywords; an explicit size is an ``int`` in KiB instead."""

    SMALL = "small"
    LARGE = "large"
    ANY = "any"


#: a page size wish: a keyword, or a size in KiB
PageSize = PageSizeKind | int


@dataclass(frozen=True, slots=True)
class GroupCount:
    """One item of ``pci_passthrough:alias``: ``count`` devices of group ``name``."""

    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    vcpus: int
    memory_mb: int
    #: guest NUMA node count; None: no explicit NUMA topology (one node when one is needed)
    numa_nodes: int | None = None
    cpu_policy: CpuPolicy = CpuPolicy.SHARED
    #: None: no huge page wish
    page_size: PageSize | None = None
    pci_numa_policy: NumaPolicy | None = None
    device_groups: tuple[GroupCount, ...] = ()
    #: the extra specs as given (kept for display and round trips)
    extra_specs: Tags = field(default=EMPTY_TAGS)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidFlavor("flavor name must not be empty", field="name", rule="non_empty")
        for attr in ("vcpus", "memory_mb"):
            if getattr(self, attr) < 1:
                raise InvalidFlavor(f"{attr} must be at least 1", field=attr, rule="minimum")
        if self.numa_nodes is not None:
            _check_numa_nodes(self.numa_nodes, self.vcpus, self.memory_mb)
        if isinstance(self.page_size, int) and self.page_size < 1:
            raise _page_size_error(str(self.page_size))
        if any(g.count < 1 for g in self.device_groups):
            raise InvalidFlavor(
                f"{PCI_ALIAS_SPEC}: every count must be at least 1",
                field=PCI_ALIAS_SPEC,
                rule="minimum",
            )

    @property
    def guest_numa_nodes(self) -> int:
        """The number of guest NUMA nodes the fit must place (1 when not set)."""
        return self.numa_nodes or 1

    @classmethod
    def from_extra_specs(
        cls,
        name: str,
        vcpus: int,
        memory_mb: int,
        extra_specs: Mapping[str, str] | None = None,
    ) -> Flavor:
        """A flavor with its fields parsed from Nova extra specs (unknown keys are kept)."""
        specs = dict(extra_specs or {})
        numa = specs.get(NUMA_NODES_SPEC)
        cpu = specs.get(CPU_POLICY_SPEC)
        pages = specs.get(PAGE_SIZE_SPEC)
        policy = specs.get(PCI_NUMA_SPEC)
        alias = specs.get(PCI_ALIAS_SPEC)
        return cls(
            name=name,
            vcpus=vcpus,
            memory_mb=memory_mb,
            numa_nodes=None if numa is None else parse_numa_nodes(numa),
            cpu_policy=CpuPolicy.SHARED if cpu is None else parse_cpu_policy(cpu),
            page_size=None if pages is None else parse_page_size(pages),
            pci_numa_policy=None if policy is None else parse_pci_numa_policy(policy),
            device_groups=() if alias is None else parse_pci_alias_spec(alias),
            extra_specs=Tags(specs),
        )


def _check_numa_nodes(nodes: int, vcpus: int, memory_mb: int) -> None:
    if nodes < 1:
        raise _numa_nodes_error(str(nodes))
    if vcpus % nodes or memory_mb % nodes:
        raise InvalidFlavor(
            "Instance CPUs and/or memory cannot be evenly distributed across instance NUMA "
            "nodes. Explicit assignment of CPUs and memory to nodes is required",
            field=NUMA_NODES_SPEC,
            rule="even_split",
        )


def _numa_nodes_error(value: str) -> InvalidFlavor:
    return InvalidFlavor(
        f"The property 'numa_nodes' cannot be '{value}'. It must be a number greater than 0",
        field=NUMA_NODES_SPEC,
        rule="minimum",
    )


def _page_size_error(value: str) -> InvalidFlavor:
    return InvalidFlavor(
        f"Invalid memory page size '{value}'", field=PAGE_SIZE_SPEC, rule="page_size"
    )


def parse_numa_nodes(value: str) -> int:
    """``hw:numa_nodes``: an integer greater than 0 (Nova's message otherwise)."""
    if not _COUNT_RE.fullmatch(value) or int(value) < 1:
        raise _numa_nodes_error(value)
    return int(value)


def parse_cpu_policy(value: str) -> CpuPolicy:
    """``hw:cpu_policy``: shared or dedicated (Nova's ``mixed`` is not supported)."""
    try:
        return CpuPolicy(value)
    except ValueError:
        available = ", ".join(CpuPolicy)
        raise InvalidFlavor(
            f"CPU policy requested from 'flavor extra specs' is invalid, given: '{value}', "
            f"available: '{available}'.",
            field=CPU_POLICY_SPEC,
            rule="enum",
        ) from None


def parse_page_size(value: str) -> PageSize:
    """``hw:mem_page_size`` as Nova reads it: a keyword, KiB digits, or a size with a unit.

    Sizes with a unit use binary multiples (``2MB`` = ``2MiB`` = 2048 KiB, ``1GB`` = 1048576
    KiB); ``b``/``bit`` mean bits. The size must be a positive whole number of KiB.
    """
    if value in PageSizeKind.__members__.values():
        return PageSizeKind(value)
    if re.fullmatch(r"[0-9]+", value):
        kib = int(value)
    else:
        found = _SIZE_RE.fullmatch(value)
        if found is None:
            raise _page_size_error(value)
        number, unit, suffix = found.groups()
        size = int(number) * 1024 ** _UNIT_EXPONENT[unit[0]] if unit else int(number)
        if suffix in ("b", "bit"):
            size = -(-size // 8)
        if size % 1024:
            raise _page_size_error(value)
        kib = size // 1024
    if kib < 1:
        raise _page_size_error(value)
    return kib


def parse_pci_numa_policy(value: str, *, source: str = PCI_NUMA_SPEC) -> NumaPolicy:
    """A PCI NUMA affinity policy from the flavor (or, with ``source``, the image)."""
    try:
        return NumaPolicy(value)
    except ValueError:
        raise InvalidFlavor(
            f"Invalid PCI NUMA affinity configured: {value}", field=source, rule="enum"
        ) from None


def parse_pci_alias_spec(value: str) -> tuple[GroupCount, ...]:
    """``pci_passthrough:alias`` with Nova's tolerant internal parser (``"a: 2, b:1"`` is ok)."""
    items = []
    for item in value.split(","):
        parts = item.split(":")
        if len(parts) != 2:
            raise InvalidFlavor(
                f"{PCI_ALIAS_SPEC}: item {item!r} must be '<group>:<count>'",
                field=PCI_ALIAS_SPEC,
                rule="format",
            )
        name, count = parts[0].strip(), parts[1]
        if not name or not _COUNT_RE.fullmatch(count) or int(count) < 1:
            raise InvalidFlavor(
                f"{PCI_ALIAS_SPEC}: item {item!r} needs a group name and a count of at least 1",
                field=PCI_ALIAS_SPEC,
                rule="format",
            )
        items.append(GroupCount(name, int(count)))
    return tuple(items)


def _validation_failed(key: str, message: str, rule: str) -> InvalidFlavor:
    return InvalidFlavor(f"Validation failed; {message}", field=key, rule=rule)


def _validate_pattern(key: str, value: str, pattern: str) -> None:
    if not re.fullmatch(pattern, value):
        raise _validation_failed(key, f"'{value}' is not of the format '{pattern}'.", "pattern")


def _validate_enum(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _validation_failed(key, f"'{value}' is not one of: {', '.join(allowed)}.", "enum")


def _validate_min_int(key: str, value: str, minimum: int) -> None:
    try:
        number = int(value)
    except ValueError:
        raise _validation_failed(
            key, f"'{value}' is not a valid integer value.", "integer"
        ) from None
    if number < minimum:
        raise _validation_failed(
            key, f"'{value}' is less than the min value of '{minimum}'.", "minimum"
        )


def validate_extra_specs(extra_specs: Mapping[str, str]) -> None:
    """The API-level check of the extra specs pcifleet reads, with Nova's validator messages.

    Stricter than the parsers (``pci_passthrough:alias`` must fullmatch
    :data:`PCI_ALIAS_PATTERN`, so ``"a: 2"`` is refused); keys pcifleet does not read pass.
    """
    for key, value in extra_specs.items():
        if key == PCI_ALIAS_SPEC:
            _validate_pattern(key, value, PCI_ALIAS_PATTERN)
        elif key == PAGE_SIZE_SPEC:
            _validate_pattern(key, value, PAGE_SIZE_PATTERN)
        elif key == PCI_NUMA_SPEC:
            _validate_enum(key, value, ("required", "preferred", "legacy", "socket"))
        elif key == CPU_POLICY_SPEC:
            _validate_enum(key, value, tuple(CpuPolicy))
        elif key == NUMA_NODES_SPEC:
            _validate_min_int(key, value, 1)


def instance_pci_numa_policy(
    flavor_policy: NumaPolicy | None, image_policy: NumaPolicy | str | None
) -> NumaPolicy | None:
    """The flavor's policy, else the image's; an image may not contradict its flavor."""
    image = image_policy
    if isinstance(image, str) and not isinstance(image, NumaPolicy):
        image = parse_pci_numa_policy(image, source=IMAGE_PCI_NUMA_PROPERTY)
    if flavor_policy is not None and image is not None and flavor_policy is not image:
        raise NumaPolicyConflict(
            f"Image property '{IMAGE_PCI_NUMA_PROPERTY}' is not permitted to override the "
            f"'{PCI_NUMA_SPEC}' flavor extra spec.",
            field=IMAGE_PCI_NUMA_PROPERTY,
            rule="no_override",
        )
    return flavor_policy or image


def device_requests_for_flavor(
    flavor: Flavor,
    groups: Mapping[str, DeviceGroup],
    project: str | None,
    image_policy: NumaPolicy | str | None = None,
    *,
    id_factory: RequestIdFactory = new_request_id,
) -> tuple[DeviceRequest, ...]:
    """The flavor's device requests, in ``pci_passthrough:alias`` order.

    ``groups`` maps names to groups; a group that is missing or owned by another project than
    ``project`` raises :class:`UnknownGroup`. Each request's NUMA policy is the instance's
    (flavor, else image) policy, else the group's.
    """
    instance_policy = instance_pci_numa_policy(flavor.pci_numa_policy, image_policy)
    requests = []
    for item in flavor.device_groups:
        group = groups.get(item.name)
        if group is None or not group.visible_to(project):
            raise UnknownGroup(name=item.name, field=PCI_ALIAS_SPEC, rule="defined")
        requests.append(
            DeviceRequest(
                count=item.count,
                alternatives=group.alternatives,
                requester=Requester(RequesterKind.GROUP, group.name),
                numa_policy=instance_policy or group.numa_policy,
                request_id=id_factory(),
            )
        )
    return tuple(requests)
