"""Device groups: the named things a tenant may ask for (Nova's ``[pci] alias``).

A :class:`DeviceGroup` names one kind of device: one or more alternative match criteria (any
one matching is enough, as Nova OR-s repeated aliases), the device type, the NUMA affinity
policy its requests get by default, whether its devices must be live-migratable, the Placement
resource class and traits, and an owner (a project id; None means public). A flavor asks for
devices by group name (``pci_passthrough:alias = gpu:1``), see :mod:`pcifleet.domain.flavor`.

Native format (a mapping; the same shape in JSON, TOML and YAML)::

    {
      "name": "gpu",                       # required, 1..256 chars, surrounding spaces dropped
      "match": [                           # required, one or more alternatives (OR)
        {"vendor_id": "10de", "product_id": "2330"},
        {"vendor_id": "10de", "product_id": "2331",
         "tags": {"physical_network": "physnet1"}}   # optional, device tags to match exactly
      ],
      "device_type": "type-PCI",           # optional: type-PCI | type-PF | type-VF
      "numa_policy": "required",           # optional: required | socket | preferred | legacy
      "live_migratable": false,            # optional bool: only (non-)migratable devices
      "resource_class": "CUSTOM_GPU",      # optional (Placement)
      "traits": ["CUSTOM_A100"],           # optional list (or comma-separated string)
      "owner": null                        # optional project id; null/absent = public
    }

``vendor_id``/``product_id`` are four hex digits (stored lower-case). A config file holds a
list under ``groups`` (TOML ``[[groups]]`` tables with ``[[groups.match]]`` sub-tables; YAML
``groups:`` list); :func:`load_groups` reads its text. Nova's alias JSON is read by
:func:`pcifleet.domain.nova.groups_from_nova_alias`.

``vdpa`` is not a group device type: vDPA devices are only handed out through ``vdpa`` ports,
as in Nova.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeVar

import yaml

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidGroup
from pcifleet.domain.request import DeviceMatch, NumaPolicy

_E = TypeVar("_E", bound=enum.StrEnum)

MAX_NAME_LENGTH: Final = 256
GROUP_DEVICE_TYPES: Final = (DeviceType.PCI, DeviceType.PF, DeviceType.VF)
_HEX4: Final = re.compile(r"[0-9a-f]{4}")
_GROUP_KEYS: Final = frozenset(
    {
        "name",
        "match",
        "device_type",
        "numa_policy",
        "live_migratable",
        "resource_class",
        "traits",
        "owner",
    }
)
_MATCH_KEYS: Final = frozenset({"vendor_id", "product_id", "tags"})


def _fail(name: str, field: str, rule: str, detail: str) -> InvalidGroup:
    where = f"group {name!r}: " if name else ""
    return InvalidGroup(f"{where}{field}: {detail}", field=field, rule=rule, group=name)


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """A named, validated set of alternative device criteria. See the module docstring."""

    name: str
    match: tuple[DeviceMatch, ...]
    device_type: DeviceType | None = None
    numa_policy: NumaPolicy = NumaPolicy.LEGACY
    #: True/False: only devices tagged live_migratable true/false; None: no constraint
    live_migratable: bool | None = None
    resource_class: str | None = None
    traits: tuple[str, ...] = ()
    #: the owning project; None = public
    owner: str | None = None

    def __post_init__(self) -> None:
        name = self.name.strip() if isinstance(self.name, str) else ""
        if not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise _fail(
                name, "name", "length", f"must be 1..{MAX_NAME_LENGTH} characters after stripping"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "match", tuple(self._checked_match(m) for m in self.match))
        if not self.match:
            raise _fail(name, "match", "required", "at least one alternative is required")
        if self.device_type is not None and self.device_type not in GROUP_DEVICE_TYPES:
            allowed = ", ".join(GROUP_DEVICE_TYPES)
            raise _fail(name, "device_type", "enum", f"must be one of: {allowed}")
        object.__setattr__(self, "resource_class", self._optional_text("resource_class"))
        object.__setattr__(self, "owner", self._optional_text("owner"))
        traits = tuple(t.strip() for t in self.traits)
        if any(not t for t in traits):
            raise _fail(name, "traits", "non_empty", "trait names must not be empty")
        object.__setattr__(self, "traits", traits)

    def _checked_match(self, match: DeviceMatch) -> DeviceMatch:
        ids = {}
        for field in ("vendor_id", "product_id"):
            value = getattr(match, field)
            if value is not None:
                value = value.lower()
                if not _HEX4.fullmatch(value):
                    raise _fail(self.name, field, "pattern", f"{value!r} is not 4 hex digits")
            ids[field] = value
        if match.dev_type is not None and match.dev_type is not self.device_type:
            raise _fail(
                self.name,
                "device_type",
                "consistent",
                f"an alternative asks for {match.dev_type} but the group for {self.device_type}",
            )
        return replace(match, **ids)

    def _optional_text(self, field: str) -> str | None:
        value: str | None = getattr(self, field)
        if value is None:
            return None
        if not value.strip():
            raise _fail(self.name, field, "non_empty", "must not be empty (omit it instead)")
        return value.strip()

    @property
    def is_public(self) -> bool:
        return self.owner is None

    def visible_to(self, project: str | None) -> bool:
        """Public groups are visible to everyone; private ones to their owner only.

        ``project=None`` (a caller without a project) sees public groups only.
        """
        return self.owner is None or (project is not None and self.owner == project)

    @property
    def alternatives(self) -> tuple[DeviceMatch, ...]:
        """The criteria a request for this group carries: each match with the group's device
        type and, unless the alternative says otherwise, its ``live_migratable`` wish."""
        return tuple(self._alternative(m) for m in self.match)

    def _alternative(self, match: DeviceMatch) -> DeviceMatch:
        props = match.props
        if self.live_migratable is not None and not match.has_prop("live_migratable"):
            wish = "true" if self.live_migratable else "false"
            props = tuple(sorted((*props, ("live_migratable", wish))))
        return replace(match, dev_type=self.device_type, props=props)

    def to_dict(self) -> dict[str, object]:
        """The native format (JSON-able; ``None`` values included)."""
        return {
            "name": self.name,
            "match": [_match_to_dict(m) for m in self.match],
            "device_type": None if self.device_type is None else self.device_type.value,
            "numa_policy": self.numa_policy.value,
            "live_migratable": self.live_migratable,
            "resource_class": self.resource_class,
            "traits": list(self.traits),
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, data: object) -> DeviceGroup:
        """Read the native format; every error names the group, the field and the rule."""
        if not isinstance(data, Mapping):
            raise _fail("", "group", "type", f"expected a mapping, got {type(data).__name__}")
        name = _text(data, "name", "", required=True) or ""
        unknown = sorted(str(k) for k in data if k not in _GROUP_KEYS)
        if unknown:
            raise _fail(name, unknown[0], "unknown_key", f"unknown key (allowed: {_allowed()})")
        return cls(
            name=name,
            match=_matches_from(data.get("match"), name),
            device_type=_enum(DeviceType, data, "device_type", name),
            numa_policy=_enum(NumaPolicy, data, "numa_policy", name) or NumaPolicy.LEGACY,
            live_migratable=_bool(data, "live_migratable", name),
            resource_class=_text(data, "resource_class", name),
            traits=_traits(data.get("traits"), name),
            owner=_text(data, "owner", name),
        )


def _allowed() -> str:
    return ", ".join(sorted(_GROUP_KEYS))


def _match_to_dict(match: DeviceMatch) -> dict[str, object]:
    out: dict[str, object] = {}
    if match.vendor_id is not None:
        out["vendor_id"] = match.vendor_id
    if match.product_id is not None:
        out["product_id"] = match.product_id
    if match.props:
        out["tags"] = dict(match.props)
    return out


def _text(
    data: Mapping[object, object], field: str, name: str, *, required: bool = False
) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise _fail(name, field, "required", "is required")
        return None
    if not isinstance(value, str):
        raise _fail(name, field, "type", f"expected a string, got {value!r}")
    return value


def _enum(kind: type[_E], data: Mapping[object, object], field: str, name: str) -> _E | None:
    raw = _text(data, field, name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(v.value for v in kind)
        raise _fail(name, field, "enum", f"{raw!r} is not one of: {allowed}") from None


def _bool(data: Mapping[object, object], field: str, name: str) -> bool | None:
    value = data.get(field)
    if value is None or isinstance(value, bool):
        return value
    raise _fail(name, field, "type", f"expected true or false, got {value!r}")


def _traits(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(t for t in (p.strip() for p in value.split(",")) if t)
    if isinstance(value, Sequence) and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise _fail(name, "traits", "type", "expected a list of strings or a comma-separated string")


def _matches_from(value: object, name: str) -> tuple[DeviceMatch, ...]:
    if value is None:
        raise _fail(name, "match", "required", "at least one alternative is required")
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _fail(name, "match", "type", "expected a list of mappings")
    return tuple(_match_from(item, name) for item in value)


def _match_from(item: object, name: str) -> DeviceMatch:
    if not isinstance(item, Mapping):
        raise _fail(name, "match", "type", f"each alternative must be a mapping, got {item!r}")
    unknown = sorted(str(k) for k in item if k not in _MATCH_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_MATCH_KEYS))
        raise _fail(name, f"match.{unknown[0]}", "unknown_key", f"unknown key (allowed: {allowed})")
    tags = item.get("tags") or {}
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in tags.items()
    ):
        raise _fail(name, "match.tags", "type", "expected a mapping of strings to strings")
    return DeviceMatch(
        _text(item, "vendor_id", name),
        _text(item, "product_id", name),
        None,
        tuple(sorted(tags.items())),
    )


class ConfigFormat(enum.StrEnum):
    TOML = "toml"
    YAML = "yaml"


def load_groups(text: str, fmt: ConfigFormat | str) -> tuple[DeviceGroup, ...]:
    """Groups from a configuration file's text (``groups`` list), in file order.

    Names must be unique within one file (alternatives belong in one group's ``match`` list).
    """
    kind = _enum(ConfigFormat, {"format": fmt}, "format", "") or ConfigFormat.TOML
    document = _parse_document(text, kind)
    if not isinstance(document, Mapping) or set(document) - {"groups"}:
        raise _fail("", "groups", "shape", "the file must hold only a 'groups' list")
    items = document.get("groups") or []
    if not isinstance(items, list):
        raise _fail("", "groups", "type", "expected a list of groups")
    groups = tuple(DeviceGroup.from_dict(item) for item in items)
    seen: set[str] = set()
    for group in groups:
        if group.name in seen:
            raise _fail(group.name, "name", "unique", "defined more than once")
        seen.add(group.name)
    return groups


def _parse_document(text: str, kind: ConfigFormat) -> object:
    try:
        if kind is ConfigFormat.TOML:
            return tomllib.loads(text)
        return yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise _fail("", "groups", "syntax", f"cannot parse {kind.value}: {detail}") from None
