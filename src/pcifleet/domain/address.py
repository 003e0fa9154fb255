"""PCI addresses and address patterns.

A PCI address is ``dddd:bb:ss.f``: domain <= 0xffff, bus <= 0xff, slot <= 0x1f, function <= 7,
kept normalized (lower-case, fixed width). With ARI (Alternative Routing-ID Interpretation) a
device may use functions 0..255 on one bus; the kernel shows function ``n`` as slot ``n >> 3``,
function ``n & 7`` — so a VF at function 8 appears as the next slot (``41:01.0``).

Patterns select addresses in device specs, with Nova's semantics and messages:

- a **glob** string ``[[domain:]bus:]slot[.func]`` where each field is ``*``, empty (= any) or a
  hex number; missing leading fields are any (``"0a:00"`` is any domain, bus 0a, slot 00; a
  single field is the slot);
- a **regex** mapping with keys ``domain``, ``bus``, ``slot``, ``function`` (missing = ``.*``),
  matched with ``re.match`` (anchored at the start only, as Nova does) on normalized fields.

Two deliberate differences from Nova, both rejecting input Nova accepts silently: a negative
glob field (Nova keeps ``-001``, which matches nothing) and an unknown key in a regex mapping
(Nova ignores ``"func"`` and so widens the selection to every function).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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

_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_FORMAT_HINT: Final = (
    "expected [dddd:]bb:ss.f (hex: domain <= ffff, bus <= ff, slot <= 1f, function <= 7)"
)


@dataclass(frozen=True, slots=True, eq=False)
class PciAddress:
    """A normalized PCI address. Order is numeric: domain, bus, slot, function.

    Equality, hash and order use one packed integer (domain, bus, slot, function in that bit
    order) computed once: spec matching and the fit compare and hash addresses hundreds of
    thousands of times, and an int compare is far cheaper than building tuples.
    """

    domain: int
    bus: int
    slot: int
    function: int
    _packed: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, value in (
            ("func", self.function),
            ("domain", self.domain),
            ("bus", self.bus),
            ("slot", self.slot),
        ):
            limit = FIELDS[name][0]
            if not 0 <= value <= limit:
                raise InvalidAddress(
                    f"field {name} ({value:#x}) must be between 0 and {limit:#x}",
                    value=f"{self.domain:x}:{self.bus:x}:{self.slot:x}.{self.function:x}",
                    field=name,
                    rule="range",
                )
        packed = (self.domain << 16) | (self.bus << 8) | (self.slot << 3) | self.function
        object.__setattr__(self, "_packed", packed)

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``[dddd:]bb:ss.f`` (any case, surrounding blanks ignored).

        Errors quote ``text`` exactly as given and name the field and the rule broken
        (``format``, ``hex``, ``width``, ``range``); fields are checked in Nova's order
        (function, domain, bus, slot).
        """
        if not isinstance(text, str):
            raise InvalidAddress("must be a string", value=text, field="address", rule="type")
        dbs, dot, func = text.strip().partition(".")
        parts = dbs.split(":")
        if not dot or len(parts) not in (2, 3):
            raise InvalidAddress(_FORMAT_HINT, value=text, field="address", rule="format")
        if len(parts) == 2:
            parts.insert(0, "0")
        values = {
            name: _address_field(name, raw, text)
            for name, raw in (("func", func), *zip(("domain", "bus", "slot"), parts, strict=True))
        }
        return cls(values["domain"], values["bus"], values["slot"], values["func"])

    @classmethod
    def from_routing_id(cls, domain: int, routing_id: int) -> PciAddress:
        """The address of a 16-bit routing id (bus << 8 | devfn); ARI-safe."""
        if not 0 <= routing_id <= 0xFFFF:
            raise InvalidAddress(
                f"routing id ({routing_id:#x}) must be between 0 and 0xffff",
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
        """The address ``functions`` routing ids further on (a VF from its PF, with ARI).

        ``PciAddress.parse("0000:41:00.0").offset(8)`` is ``0000:41:01.0``: function 8 does not
        exist as such, the kernel shows it as the next slot.
        """
        return PciAddress.from_routing_id(self.domain, self.routing_id + functions)

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PciAddress):
            return NotImplemented
        return self._packed == other._packed

    def __hash__(self) -> int:
        return self._packed

    def __lt__(self, other: PciAddress) -> bool:
        if not isinstance(other, PciAddress):
            return NotImplemented
        return self._packed < other._packed

    def __le__(self, other: PciAddress) -> bool:
        if not isinstance(other, PciAddress):
            return NotImplemented
        return self._packed <= other._packed

    def __gt__(self, other: PciAddress) -> bool:
        if not isinstance(other, PciAddress):
            return NotImplemented
        return self._packed > other._packed

    def __ge__(self, other: PciAddress) -> bool:
        if not isinstance(other, PciAddress):
            return NotImplemented
        return self._packed >= other._packed

    def fields(self) -> dict[str, str]:
        """Normalized text of each field, keyed as Nova's regex specs key them."""
        return {
            "domain": f"{self.domain:04x}",
            "bus": f"{self.bus:02x}",
            "slot": f"{self.slot:02x}",
            "function": f"{self.function:x}",
        }


def _address_field(name: str, raw: str, text: str) -> int:
    """One field of a concrete address: hex digits, at most the field's width, in range."""
    limit, width = FIELDS[name]
    if not _HEX.fullmatch(raw):
        raise InvalidAddress(
            f"field {name} ({raw!r}) is not a hex number", value=text, field=name, rule="hex"
        )
    if len(raw) > width:
        raise InvalidAddress(
            f"field {name} ({raw}) has more than {width} hex digits",
            value=text,
            field=name,
            rule="width",
        )
    value = int(raw, 16)
    if value > limit:
        raise InvalidAddress(
            f"field {name} ({raw}) is greater than the maximum allowable value ({limit:X})",
            value=text,
            field=name,
            rule="range",
        )
    return value


# --------------------------------------------------------------------------- patterns

ANY: Final = "*"
_SPEC_PREFIX: Final = "Invalid [pci]device_spec config: "


def _pattern_field(name: str, raw: str) -> str:
    """Normalize one glob field: ``*`` or a zero-padded hex string (Nova's rules and texts)."""
    value = raw.strip()
    if value in ("", ANY):
        return ANY
    limit, width = FIELDS[name]
    try:
        number = int(value, 16)
    except ValueError:
        number = -1
    if number < 0:
        raise InvalidSpecAddress(
            f"{_SPEC_PREFIX}property {name} ('{value}') does not parse as a hex number.",
            field=name,
            rule="hex",
        )
    if number > limit:
        raise InvalidSpecAddress(
            f"{_SPEC_PREFIX}property {name} ({value}) is greater than "
            f"the maximum allowable value ({limit:X}).",
            field=name,
            rule="range",
        )
    return f"{number:0{width}x}"


def _wrong_format(value: object, field_name: str, rule: str) -> InvalidSpecAddress:
    return InvalidSpecAddress(
        f"The PCI address {value} has an incorrect format.", field=field_name, rule=rule
    )


@dataclass(frozen=True, slots=True)
class AddressGlob:
    """``[[domain:]bus:]slot[.func]`` with ``*`` or empty fields meaning any.

    Fields are normalized on construction (``"A"`` -> ``"0a"``); matching compares integers,
    since a spec list checks every device of a host against every spec.
    """

    domain: str = ANY
    bus: str = ANY
    slot: str = ANY
    func: str = ANY
    _want: tuple[int, int, int, int] = field(
        init=False, repr=False, compare=False, default=(-1, -1, -1, -1)
    )

    kind: ClassVar[str] = "glob"

    def __post_init__(self) -> None:
        normalized = {
            name: _pattern_field(name, getattr(self, name))
            for name in ("func", "domain", "bus", "slot")
        }
        for name, value in normalized.items():
            object.__setattr__(self, name, value)
        want = tuple(-1 if v == ANY else int(v, 16) for v in self._texts())
        object.__setattr__(self, "_want", want)

    @classmethod
    def parse(cls, text: str) -> AddressGlob:
        """Nova's ``PciAddressGlobSpec``: checks the function first, then the field count."""
        dbs, _, func_raw = text.partition(".")
        if func_raw and not func_raw.strip():
            # Nova strips a blank function to "" and then fails to parse it as hex.
            raise InvalidSpecAddress(
                f"{_SPEC_PREFIX}property func ('') does not parse as a hex number.",
                field="func",
                rule="hex",
            )
        func = _pattern_field("func", func_raw)
        parts = dbs.split(":")
        if len(parts) > 3:
            raise _wrong_format(text, "address", "format")
        domain, bus, slot = [ANY] * (3 - len(parts)) + parts
        return cls(domain, bus, slot, func)

    def _texts(self) -> tuple[str, str, str, str]:
        return (self.domain, self.bus, self.slot, self.func)

    def matches(self, address: PciAddress) -> bool:
        domain, bus, slot, func = self._want
        return (
            (func < 0 or func == address.function)
            and (slot < 0 or slot == address.slot)
            and (bus < 0 or bus == address.bus)
            and (domain < 0 or domain == address.domain)
        )

    def single(self) -> PciAddress | None:
        """The one address this glob names, when every field is a number."""
        if min(self._want) < 0:
            return None
        return PciAddress(*self._want)

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
    _compiled: tuple[re.Pattern[str], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    kind: ClassVar[str] = "regex"

    def __post_init__(self) -> None:
        compiled = []
        for key, pattern in zip(_REGEX_KEYS, self._texts(), strict=True):
            if not isinstance(pattern, str):
                raise _wrong_format(self._as_dict(), key, "type")
            try:
                compiled.append(re.compile(pattern))
            except re.error:
                raise _wrong_format(self._as_dict(), key, "regex") from None
        object.__setattr__(self, "_compiled", tuple(compiled))

    @classmethod
    def parse(cls, value: Mapping[str, object]) -> AddressRegex:
        """Nova's ``PciAddressRegexSpec``; unknown keys are rejected (Nova ignores them)."""
        for key in value:
            if key not in _REGEX_KEYS:
                raise _wrong_format(dict(value), str(key), "unknown_key")
        fields: dict[str, str] = {}
        for key in _REGEX_KEYS:
            raw = value.get(key, ".*")
            if not isinstance(raw, str):
                raise _wrong_format(dict(value), key, "type")
            fields[key] = raw
        try:
            return cls(**fields)
        except InvalidSpecAddress as err:
            raise _wrong_format(dict(value), err.fields["field"], err.fields["rule"]) from None

    def _texts(self) -> tuple[str, str, str, str]:
        return (self.domain, self.bus, self.slot, self.function)

    def _as_dict(self) -> dict[str, str]:
        return dict(zip(_REGEX_KEYS, self._texts(), strict=True))

    def matches(self, address: PciAddress) -> bool:
        domain, bus, slot, function = self._compiled
        return (
            function.match(f"{address.function:x}") is not None
            and slot.match(f"{address.slot:02x}") is not None
            and bus.match(f"{address.bus:02x}") is not None
            and domain.match(f"{address.domain:04x}") is not None
        )

    def single(self) -> PciAddress | None:
        """The one address this regex names, when every field is plain hex digits."""
        values = self._texts()
        if not all(_HEX.fullmatch(v) for v in values):
            return None
        try:
            return PciAddress(*(int(v, 16) for v in values))
        except InvalidAddress:
            return None

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._as_dict().items() if v != ".*")
        return f"regex({inner})"


AddressPattern = AddressGlob | AddressRegex


def parse_address_pattern(value: object) -> AddressPattern:
    """A glob string or a regex mapping; anything else is Nova's wrong-format error."""
    if isinstance(value, str):
        return AddressGlob.parse(value)
    if isinstance(value, Mapping):
        return AddressRegex.parse(value)
    raise _wrong_format(value, "address", "type")
