"""PCI addresses and address patterns.

A PCI address is ``dddd:bb:ss.f``: domain <= 0xffff, bus <= 0xff, slot <= 0x1f, function <= 7,
kept normalized (lower-case, fixed width). With ARI (Alternative Routing-ID Interpretation) a
device may use functions 0..255 on one bus; the kernel shows function ``n`` as slot ``n >> 3``,
function ``n & 7`` — so a VF at function 8 appears as the next slot (``41:01.0``).

Patterns select addresses in device specs, with Nova's semantics and messages:

- a **glob** string ``[[domain:]bus:]slot[.func]`` where each field is ``*``, empty (= any) or a
  hex number; missing leading fields are any (``"0a:00"`` is any domain, bus 0a, slot 00);
- a **regex** mapping with keys ``domain``, ``bus``, ``slot``, ``function`` (missing = ``.*``),
  matched with ``re.match`` (anchored at the start only, as Nova does) on normalized fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import total_ordering
from typing import ClassVar, Final

from pcifleet.domain.errors import InvalidAddress, InvalidSpecAddress

MAX_DOMAIN: Final = 0xFFFF
MAX_BUS: Final = 0xFF
MAX_SLOT: Final = 0x1F
MAX_FUNC: Final = 0x7

#: field name (as Nova spells it in messages) -> (maximum, width when formatted)
FIELDS: Final[dict[str, tuple[int, int]]] = {
    "domain": (MAX_DOMAIN, 4),
    "bus": (MAX_BUS, 2),
    "slot": (MAX_SLOT, 2),
    "func": (MAX_FUNC, 1),
}

_ADDRESS_RE: Final = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
    r"(?P<slot>[0-9a-fA-F]{1,2})\.(?P<func>[0-9a-fA-F])$"
)


@total_ordering
@dataclass(frozen=True, slots=True)
class PciAddress:
    """A normalized PCI address. Order is numeric: domain, bus, slot, function."""

    domain: int
    bus: int
    slot: int
    function: int

    def __post_init__(self) -> None:
        for name, value in (
            ("domain", self.domain),
            ("bus", self.bus),
            ("slot", self.slot),
            ("func", self.function),
        ):
            limit = FIELDS[name][0]
            if not 0 <= value <= limit:
                raise InvalidAddress(
                    f"field {name} ({value:#x}) must be between 0 and {limit:#x}",
                    value=_raw(self),
                    field=name,
                    rule="range",
                )

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``dddd:bb:ss.f`` (domain optional, any case, surrounding blanks ignored)."""
        if not isinstance(text, str):
            raise InvalidAddress("must be a string", value=text, field="address", rule="type")
        match = _ADDRESS_RE.match(text.strip())
        if match is None:
            _raise_format_error(text)
        assert match is not None
        return cls(
            int(match["domain"] or "0", 16),
            int(match["bus"], 16),
            int(match["slot"], 16),
            int(match["func"], 16),
        )

    @classmethod
    def from_routing_id(cls, domain: int, routing_id: int) -> PciAddress:
        """The address of a 16-bit routing id (bus << 8 | devfn); ARI-safe."""
        if not 0 <= routing_id <= 0xFFFF:
            raise InvalidAddress(
                "routing id must be between 0 and 0xffff",
                value=f"{domain:04x}:{routing_id:#x}",
                field="routing_id",
                rule="range",
            )
        devfn = routing_id & 0xFF
        return cls(domain, routing_id >> 8, devfn >> 3, devfn & 0x7)

    @property
    def routing_id(self) -> int:
        return (self.bus << 8) | (self.slot << 3) | self.function

    def offset(self, functions: int) -> PciAddress:
        """The address ``functions`` routing ids further on (a VF from its PF, with ARI)."""
        return PciAddress.from_routing_id(self.domain, self.routing_id + functions)

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, PciAddress):
            return NotImplemented
        return self._key() < other._key()

    def _key(self) -> tuple[int, int, int, int]:
        return (self.domain, self.bus, self.slot, self.function)

    def fields(self) -> dict[str, str]:
        """Normalized text of each field, keyed as Nova's regex specs key them."""
        return {
            "domain": f"{self.domain:04x}",
            "bus": f"{self.bus:02x}",
            "slot": f"{self.slot:02x}",
            "function": f"{self.function:x}",
        }


def _raw(address: PciAddress) -> str:
    return f"{address.domain:x}:{address.bus:x}:{address.slot:x}.{address.function:x}"


def _raise_format_error(text: str) -> None:
    stripped = text.strip() if isinstance(text, str) else text
    if isinstance(stripped, str) and "." in stripped and stripped.count(":") in (1, 2):
        dbs, _, func = stripped.partition(".")
        parts = dbs.split(":")
        names = ["domain", "bus", "slot"][-len(parts) :]
        for name, part in [*zip(names, parts, strict=True), ("func", func)]:
            _check_hex_field(name, part, text)
    raise InvalidAddress(
        "expected dddd:bb:ss.f (hex: domain <= ffff, bus <= ff, slot <= 1f, function <= 7)",
        value=text,
        field="address",
        rule="format",
    )


def _check_hex_field(name: str, part: str, text: str) -> None:
    limit, width = FIELDS[name]
    if not re.fullmatch(r"[0-9a-fA-F]+", part):
        raise InvalidAddress(
            f"field {name} ({part!r}) is not a hex number", value=text, field=name, rule="hex"
        )
    if int(part, 16) > limit or len(part) > width:
        raise InvalidAddress(
            f"field {name} ({part}) is greater than the maximum allowable value ({limit:X})",
            value=text,
            field=name,
            rule="range",
        )


# --------------------------------------------------------------------------- patterns

ANY: Final = "*"


def _pattern_field(name: str, raw: str) -> str:
    """Normalize one glob field: ``*`` or a zero-padded hex string (Nova's rules and texts)."""
    value = raw.strip()
    if value in ("", ANY):
        return ANY
    limit, width = FIELDS[name]
    try:
        number = int(value, 16)
    except ValueError:
        raise InvalidSpecAddress(
            f"Invalid [pci]device_spec config: property {name} ('{value}') does not parse "
            "as a hex number.",
            field=name,
            rule="hex",
        ) from None
    if number > limit:
        raise InvalidSpecAddress(
            f"Invalid [pci]device_spec config: property {name} ({value}) is greater than "
            f"the maximum allowable value ({limit:X}).",
            field=name,
            rule="range",
        )
    return f"{number:0{width}x}"


@dataclass(frozen=True, slots=True)
class AddressGlob:
    """``[[domain:]bus:]slot[.func]`` with ``*`` or empty fields meaning any."""

    domain: str = ANY
    bus: str = ANY
    slot: str = ANY
    func: str = ANY

    kind: ClassVar[str] = "glob"

    @classmethod
    def parse(cls, text: str) -> AddressGlob:
        dbs, _, func_raw = text.partition(".")
        parts = dbs.split(":")
        if len(parts) > 3:
            raise InvalidSpecAddress(
                f"The PCI address {text} has an incorrect format.", field="address", rule="format"
            )
        func = _pattern_field("func", func_raw)
        padded = [ANY] * (3 - len(parts)) + parts
        domain, bus, slot = (
            _pattern_field(name, raw)
            for name, raw in zip(("domain", "bus", "slot"), padded, strict=True)
        )
        return cls(domain, bus, slot, func)

    def matches(self, address: PciAddress) -> bool:
        return all(
            want in (ANY, have)
            for want, have in (
                (self.domain, f"{address.domain:04x}"),
                (self.bus, f"{address.bus:02x}"),
                (self.slot, f"{address.slot:02x}"),
                (self.func, f"{address.function:x}"),
            )
        )

    def single(self) -> PciAddress | None:
        """The one address this glob names, when every field is a number."""
        if ANY in (self.domain, self.bus, self.slot, self.func):
            return None
        return PciAddress(
            int(self.domain, 16), int(self.bus, 16), int(self.slot, 16), int(self.func, 16)
        )

    def __str__(self) -> str:
        return f"{self.domain}:{self.bus}:{self.slot}.{self.func}"


_REGEX_KEYS: Final = ("domain", "bus", "slot", "function")


@dataclass(frozen=True, slots=True)
class AddressRegex:
    """Per-field regular expressions, matched with ``re.match`` on normalized fields."""

    domain: str = ".*"
    bus: str = ".*"
    slot: str = ".*"
    function: str = ".*"

    kind: ClassVar[str] = "regex"

    @classmethod
    def parse(cls, value: Mapping[str, object]) -> AddressRegex:
        fields: dict[str, str] = {}
        for key in _REGEX_KEYS:
            raw = value.get(key, ".*")
            if not isinstance(raw, str):
                raise InvalidSpecAddress(
                    f"The PCI address {dict(value)} has an incorrect format.",
                    field=key,
                    rule="type",
                )
            try:
                re.compile(raw)
            except re.error:
                raise InvalidSpecAddress(
                    f"The PCI address {dict(value)} has an incorrect format.",
                    field=key,
                    rule="regex",
                ) from None
            fields[key] = raw
        return cls(**fields)

    def matches(self, address: PciAddress) -> bool:
        have = address.fields()
        return all(
            _compiled(pattern).match(have[key]) is not None
            for key, pattern in zip(
                _REGEX_KEYS, (self.domain, self.bus, self.slot, self.function), strict=True
            )
        )

    def single(self) -> PciAddress | None:
        """The one address this regex names, when every field is plain hex digits."""
        values = (self.domain, self.bus, self.slot, self.function)
        if not all(re.fullmatch(r"[0-9a-fA-F]+", v) for v in values):
            return None
        try:
            return PciAddress(*(int(v, 16) for v in values))
        except InvalidAddress:
            return None


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _CACHE.get(pattern)
    if compiled is None:
        compiled = _CACHE[pattern] = re.compile(pattern)
    return compiled


AddressPattern = AddressGlob | AddressRegex


def parse_address_pattern(value: object) -> AddressPattern:
    """A glob string or a regex mapping; anything else is Nova's wrong-format error."""
    if isinstance(value, str):
        return AddressGlob.parse(value)
    if isinstance(value, Mapping):
        return AddressRegex.parse(value)
    raise InvalidSpecAddress(
        f"The PCI address {value} has an incorrect format.", field="address", rule="type"
    )
