"""Coming from Nova: paste your configuration unchanged and get Nova's semantics.

Three entry points, one per thing an operator already has:

``device_spec_from_nova(values, report_in_placement=False)``
    The values of ``[pci] device_spec`` (each a JSON object or list of objects, repeated option
    = several values) -> the ordered spec list (first match wins, tags flow to devices).
    Same keys, same validation, same error texts as Nova; see :mod:`pcifleet.domain.spec`.

``groups_from_nova_alias(values, pci_in_placement=False)``
    The values of ``[pci] alias`` (one JSON object per value) -> device groups. Mapping:

    ==================  ===================================================================
    alias key           device group
    ==================  ===================================================================
    ``name``            ``name`` (stripped); the same name repeated = alternatives (OR),
                        allowed only with equal ``numa_policy`` and ``device_type``
    ``vendor_id``,      one alternative ``match`` per alias value (ids lower-cased: Nova
    ``product_id``      compares them case-insensitively)
    ``device_type``     ``device_type`` (type-PCI, type-PF, type-VF; not vdpa)
    ``numa_policy``     ``numa_policy`` (default legacy)
    ``live_migratable`` the alternative's ``live_migratable`` tag ("true"/"false"), and the
                        group's ``live_migratable`` when every alternative agrees
    ``resource_class``, group fields when every alternative agrees (Placement only; Nova
    ``traits``          ignores them when matching devices)
    ``capability_type`` accepted ("pci" only) and ignored, as Nova effectively does
    ==================  ===================================================================

    Every alias must name ``vendor_id`` and ``product_id`` (or, with ``pci_in_placement``, a
    ``resource_class``), exactly as Nova checks after parsing. Groups from Nova are public.

``requests_from_flavor_extra_specs(extra_specs, groups, ...)``
    A flavor's extra specs (``pci_passthrough:alias``, ``hw:pci_numa_affinity_policy``) and
    the groups -> device requests, Nova's ``get_pci_requests_from_flavor``. Ports become
    requests through :func:`pcifleet.domain.vnic.port_device_request`.

Errors keep Nova's messages: ``Invalid PCI alias definition: <reason>`` where the reason is the
JSON or schema error (schema messages mirror jsonschema's texts), ``NUMA policy mismatch for
alias '<name>'``, ``Device type mismatch for alias '<name>'``, and the unprefixed id checks
("The PCI alias(es) a,b does not have vendor_id and product_id fields set."). One deliberate
difference: where Nova fails with a bare ``'dev_type'`` (a repeated alias without
``device_type``), pcifleet says which alias needs a device type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidGroup, InvalidGroupSet
from pcifleet.domain.flavor import Flavor, device_requests_for_flavor
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.request import (
    DeviceMatch,
    DeviceRequest,
    NumaPolicy,
    RequestIdFactory,
    new_request_id,
)
from pcifleet.domain.spec import SpecList, parse_spec_list

#: Nova's ``PCI_VENDOR_PATTERN`` (``re.search``, as jsonschema applies ``pattern``)
VENDOR_PATTERN: Final = r"^([\da-fA-F]{4})$"
_TRUE: Final = ("1", "t", "true", "on", "y", "yes")
_FALSE: Final = ("0", "f", "false", "off", "n", "no")

#: Nova's alias schema: key -> (enum or None, pattern or None); every value is a string
_ALIAS_PROPERTIES: Final[dict[str, tuple[tuple[str, ...] | None, str | None]]] = {
    "name": (None, None),
    "capability_type": (("pci",), None),
    "product_id": (None, VENDOR_PATTERN),
    "vendor_id": (None, VENDOR_PATTERN),
    "device_type": (("type-PCI", "type-PF", "type-VF"), None),
    "numa_policy": (("required", "legacy", "preferred", "socket"), None),
    "resource_class": (None, None),
    "traits": (None, None),
    "live_migratable": (None, None),
}
_NAME_LENGTH: Final = (1, 256)


def device_spec_from_nova(values: Iterable[str], *, report_in_placement: bool = False) -> SpecList:
    """``[pci] device_spec`` values -> the ordered spec list (Nova's keys, rules and errors).

    ``report_in_placement`` mirrors ``[pci] report_in_placement`` (needed by
    ``one_time_use=true``).
    """
    return parse_spec_list(values, report_in_placement=report_in_placement)


def _schema_error(spec: object) -> str | None:
    """The message jsonschema would give for Nova's alias schema (its best match), or None."""
    if not isinstance(spec, dict):
        return f"{spec!r} is not of type 'object'"
    extras = sorted((k for k in spec if k not in _ALIAS_PROPERTIES), key=str)
    if extras:
        verb = "was" if len(extras) == 1 else "were"
        joined = ", ".join(repr(e) for e in extras)
        return f"Additional properties are not allowed ({joined} {verb} unexpected)"
    if "name" not in spec:
        return "'name' is a required property"
    for key, (allowed, pattern) in _ALIAS_PROPERTIES.items():
        if key in spec:
            message = _property_error(key, spec[key], allowed, pattern)
            if message:
                return message
    return None


def _property_error(
    key: str, value: object, allowed: tuple[str, ...] | None, pattern: str | None
) -> str | None:
    if not isinstance(value, str):
        return f"{value!r} is not of type 'string'"
    if key == "name" and len(value) < _NAME_LENGTH[0]:
        return f"{value!r} should be non-empty"
    if key == "name" and len(value) > _NAME_LENGTH[1]:
        return f"{value!r} is too long"
    if allowed is not None and value not in allowed:
        return f"{value!r} is not one of {list(allowed)!r}"
    if pattern is not None and not re.search(pattern, value):
        return f"{value!r} does not match {pattern!r}"
    return None


def _bool_from_string(value: str) -> bool:
    """oslo's strict ``bool_from_string``, with its message."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    acceptable = ", ".join(f"'{s}'" for s in sorted(_TRUE + _FALSE))
    raise InvalidGroup(
        f"Unrecognized value '{value}', acceptable values are: {acceptable}",
        field="live_migratable",
        rule="bool",
    )


@dataclass
class _Alias:
    """One alias name while parsing: its policy and its spec dicts (Nova's tuple)."""

    numa_policy: str
    specs: list[dict[str, str]] = field(default_factory=list)


def _parse_alias_value(text: str) -> tuple[str, str, dict[str, str]]:
    """One ``[pci] alias`` value -> (name, numa_policy, spec) as Nova builds them."""
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise InvalidGroup(str(exc), field="alias", rule="json") from None
    message = _schema_error(spec)
    if message is not None:
        raise InvalidGroup(message, field="alias", rule="schema")
    name = spec.pop("name").strip()
    numa_policy = spec.pop("numa_policy", None) or NumaPolicy.LEGACY.value
    dev_type = spec.pop("device_type", None)
    if dev_type:
        spec["dev_type"] = dev_type
    live = spec.pop("live_migratable", None)
    if live is not None:
        spec["live_migratable"] = "true" if _bool_from_string(live) else "false"
    return name, numa_policy, spec


def _add_alias(aliases: dict[str, _Alias], name: str, policy: str, spec: dict[str, str]) -> None:
    known = aliases.get(name)
    if known is None:
        aliases[name] = _Alias(policy, [spec])
        return
    if known.numa_policy != policy:
        raise InvalidGroup(f"NUMA policy mismatch for alias '{name}'", field="numa_policy")
    first_type = known.specs[0].get("dev_type")
    if first_type is None or "dev_type" not in spec:
        raise InvalidGroup(
            f"alias '{name}' is defined more than once, so every definition must set "
            "device_type ('dev_type')",
            field="device_type",
            rule="required",
        )
    if first_type != spec["dev_type"]:
        raise InvalidGroup(f"Device type mismatch for alias '{name}'", field="device_type")
    known.specs.append(spec)


def _check_aliases(aliases: Mapping[str, _Alias], pci_in_placement: bool) -> None:
    """Nova's checks after parsing (``_validate_multispec``, ``_validate_required_ids``)."""
    if pci_in_placement:
        multi = [name for name, alias in aliases.items() if len(alias.specs) > 1]
        if multi:
            raise InvalidGroupSet(
                f"The PCI alias(es) {','.join(multi)} have multiple specs but "
                "[filter_scheduler]pci_in_placement is True. The PCI in Placement feature only "
                "supports one spec per alias. You can assign the same resource_class to "
                "multiple [pci]device_spec matchers to allow using different devices for the "
                "same alias.",
                field="alias",
                rule="one_spec",
            )
    missing = sorted(
        name
        for name, alias in aliases.items()
        if any(not _has_ids(spec, pci_in_placement) for spec in alias.specs)
    )
    if missing:
        tail = " or resource_class field set." if pci_in_placement else "."
        raise InvalidGroupSet(
            f"The PCI alias(es) {','.join(missing)} does not have vendor_id and product_id "
            f"fields set{tail}",
            field="alias",
            rule="ids",
        )


def _has_ids(spec: Mapping[str, str], pci_in_placement: bool) -> bool:
    ids = "vendor_id" in spec and "product_id" in spec
    return ids or (pci_in_placement and "resource_class" in spec)


def _agreed(specs: Sequence[Mapping[str, str]], key: str) -> str | None:
    """The value every spec gives ``key``, or None when they differ or leave it out."""
    values = {spec.get(key) for spec in specs}
    return values.pop() if len(values) == 1 else None


def _group_from_alias(name: str, alias: _Alias) -> DeviceGroup:
    def match(spec: Mapping[str, str]) -> DeviceMatch:
        live = spec.get("live_migratable")
        props: tuple[tuple[str, str | None], ...] = (
            () if live is None else (("live_migratable", live),)
        )
        return DeviceMatch(
            _lower(spec.get("vendor_id")), _lower(spec.get("product_id")), None, props
        )

    dev_type = alias.specs[0].get("dev_type")
    live = _agreed(alias.specs, "live_migratable")
    traits = _agreed(alias.specs, "traits")
    return DeviceGroup(
        name=name,
        match=tuple(match(spec) for spec in alias.specs),
        device_type=None if dev_type is None else DeviceType(dev_type),
        numa_policy=NumaPolicy(alias.numa_policy),
        live_migratable=None if live is None else live == "true",
        resource_class=_agreed(alias.specs, "resource_class"),
        traits=() if traits is None else tuple(t for t in traits.split(",") if t.strip()),
    )


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def groups_from_nova_alias(
    values: Iterable[str], *, pci_in_placement: bool = False
) -> tuple[DeviceGroup, ...]:
    """``[pci] alias`` values -> public device groups, in first-definition order.

    ``pci_in_placement`` mirrors ``[filter_scheduler] pci_in_placement``: one spec per alias,
    and a ``resource_class`` may stand in for the vendor/product ids.
    """
    aliases: dict[str, _Alias] = {}
    for text in values:
        name, policy, spec = _parse_alias_value(text)
        _add_alias(aliases, name, policy, spec)
    _check_aliases(aliases, pci_in_placement)
    return tuple(_group_from_alias(name, alias) for name, alias in aliases.items())


def requests_from_flavor_extra_specs(
    extra_specs: Mapping[str, str],
    groups: Mapping[str, DeviceGroup] | Iterable[DeviceGroup],
    *,
    project: str | None = None,
    image_policy: NumaPolicy | str | None = None,
    id_factory: RequestIdFactory = new_request_id,
) -> tuple[DeviceRequest, ...]:
    """Nova's ``get_pci_requests_from_flavor``: the device requests of a flavor's extra specs.

    Only the PCI-related extra specs matter here; the flavor's size is irrelevant (a
    placeholder of 1 vCPU / 1 MB is used to reuse the parser).
    """
    by_name = groups if isinstance(groups, Mapping) else {g.name: g for g in groups}
    pci_specs = {k: v for k, v in extra_specs.items() if k.startswith(("pci_", "hw:pci_"))}
    flavor = Flavor.from_extra_specs("nova-extra-specs", 1, 1, pci_specs)
    return device_requests_for_flavor(flavor, by_name, project, image_policy, id_factory=id_factory)
