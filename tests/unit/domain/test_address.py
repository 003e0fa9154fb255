"""PCI addresses and address patterns: parsing, normalization, order, ARI, Nova's errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcifleet.domain.address import (
    MAX_BUS,
    MAX_DOMAIN,
    MAX_FUNC,
    MAX_SLOT,
    AddressGlob,
    AddressRegex,
    PciAddress,
    parse_address_pattern,
)
from pcifleet.domain.errors import InvalidAddress, InvalidSpec, InvalidSpecAddress

A = PciAddress.parse

# ------------------------------------------------------------------ concrete addresses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0000:0a:00.1", "0000:0a:00.1"),
        ("0000:0A:1F.7", "0000:0a:1f.7"),
        ("0a:00.1", "0000:0a:00.1"),
        ("  0000:81:00.0\n", "0000:81:00.0"),
        ("ffff:ff:1f.7", "ffff:ff:1f.7"),
        ("1:2:3.4", "0001:02:03.4"),
    ],
)
def test_parse_normalizes(text: str, expected: str) -> None:
    assert str(A(text)) == expected


@pytest.mark.parametrize(
    ("text", "field", "rule", "detail"),
    [
        ("0000:00:20.0", "slot", "range", "field slot (20) is greater than the maximum"),
        ("0000:00:1f.8", "func", "range", "field func (8) is greater than the maximum"),
        ("0000:00:1f.f", "func", "range", "allowable value (7)"),
        ("00000:00:00.0", "domain", "width", "more than 4 hex digits"),
        ("0000:000a:00.0", "bus", "width", "more than 2 hex digits"),
        ("0000:zz:00.0", "bus", "hex", "field bus ('zz') is not a hex number"),
        ("0000:0a:0g.0", "slot", "hex", "not a hex number"),
        ("0000:0a:00.", "func", "hex", "field func ('') is not a hex number"),
        ("0000:0a:00", "address", "format", "expected [dddd:]bb:ss.f"),
        ("0:0:0:0.0", "address", "format", "expected"),
        ("00.0", "address", "format", "expected"),
        ("", "address", "format", "expected"),
    ],
)
def test_parse_errors_name_field_rule_and_quote_input(
    text: str, field: str, rule: str, detail: str
) -> None:
    with pytest.raises(InvalidAddress) as info:
        A(text)
    err = info.value
    assert err.fields["field"] == field
    assert err.fields["rule"] == rule
    assert detail in str(err)
    # the message quotes the input as the user wrote it, never a reconstruction
    assert str(err).startswith(f"PCI address {text!r}: ")
    assert err.code == "pcifleet.address.invalid"
    assert err.status == 400


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidAddress) as info:
        A(1234)  # type: ignore[arg-type]
    assert info.value.fields["rule"] == "type"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"domain": MAX_DOMAIN + 1, "bus": 0, "slot": 0, "function": 0}, "domain"),
        ({"domain": 0, "bus": MAX_BUS + 1, "slot": 0, "function": 0}, "bus"),
        ({"domain": 0, "bus": 0, "slot": MAX_SLOT + 1, "function": 0}, "slot"),
        ({"domain": 0, "bus": 0, "slot": 0, "function": MAX_FUNC + 1}, "func"),
        ({"domain": -1, "bus": 0, "slot": 0, "function": 0}, "domain"),
    ],
)
def test_constructor_enforces_limits(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        PciAddress(**kwargs)
    assert info.value.fields["field"] == field
    assert info.value.fields["rule"] == "range"


def test_order_is_numeric_not_textual() -> None:
    texts = ["0001:00:00.0", "0000:0a:00.0", "0000:09:1f.7", "0000:0a:00.1", "0000:0a:01.0"]
    ordered = sorted(A(t) for t in texts)
    assert [str(a) for a in ordered] == [
        "0000:09:1f.7",
        "0000:0a:00.0",
        "0000:0a:00.1",
        "0000:0a:01.0",
        "0001:00:00.0",
    ]


def test_every_comparison_operator() -> None:
    low, high = A("0000:0a:00.1"), A("0000:0a:01.0")
    assert low < high and low <= high and high > low and high >= low
    assert low <= A("0a:00.1") and low >= A("0a:00.1")
    assert not (high < low or high <= low or low > high or low >= high)
    assert low != high
    assert low != "0000:0a:00.1"


@pytest.mark.parametrize("other", ["0000:0a:00.1", 1, None])
def test_ordering_against_other_types_is_a_type_error(other: object) -> None:
    address = A("0000:0a:00.1")
    for compare in (
        lambda: address < other,  # type: ignore[operator]
        lambda: address <= other,  # type: ignore[operator]
        lambda: address > other,  # type: ignore[operator]
        lambda: address >= other,  # type: ignore[operator]
    ):
        with pytest.raises(TypeError):
            compare()


def test_equal_addresses_hash_alike() -> None:
    assert A("0000:0A:00.1") == A("0a:00.1")
    assert len({A("0000:0A:00.1"), A("0a:00.1")}) == 1


def test_fields_are_the_normalized_texts_regex_specs_see() -> None:
    assert A("1:2:3.4").fields() == {"domain": "0001", "bus": "02", "slot": "03", "function": "4"}


# ------------------------------------------------------------------------------ ARI


@pytest.mark.parametrize(
    ("start", "offset", "expected"),
    [
        ("0000:41:00.0", 8, "0000:41:01.0"),
        ("0000:41:00.0", 1, "0000:41:00.1"),
        ("0000:41:00.2", 6, "0000:41:01.0"),
        ("0000:41:1f.7", 1, "0000:42:00.0"),
        ("0000:3b:02.0", 0, "0000:3b:02.0"),
        ("0000:41:01.0", -8, "0000:41:00.0"),
    ],
)
def test_ari_offset(start: str, offset: int, expected: str) -> None:
    assert A(start).offset(offset) == A(expected)


def test_routing_id_round_trip() -> None:
    address = A("0000:41:01.3")
    assert address.routing_id == 0x410B
    assert PciAddress.from_routing_id(0, 0x410B) == address


def test_offset_past_the_last_bus_is_an_error() -> None:
    with pytest.raises(InvalidAddress) as info:
        A("0000:ff:1f.7").offset(1)
    assert info.value.fields["field"] == "routing_id"
    assert info.value.fields["rule"] == "range"


# -------------------------------------------------------------------------- globs


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("*:0a:00.*", "*:0a:00.*"),
        (":0a:00.", "*:0a:00.*"),
        (".5", "*:*:*.5"),
        ("0000:06:", "0000:06:*.*"),
        ("00", "*:*:00.*"),
        ("1f", "*:*:1f.*"),
        ("0a:00", "*:0a:00.*"),
        ("", "*:*:*.*"),
        ("*:*:*.*", "*:*:*.*"),
        (" 0 : A : 1 . 2 ", "0000:0a:01.2"),
        ("0x0a:00.1", "*:0a:00.1"),
    ],
)
def test_glob_normalization(text: str, normalized: str) -> None:
    assert str(AddressGlob.parse(text)) == normalized


@pytest.mark.parametrize(
    ("pattern", "address", "expected"),
    [
        ("*:0a:00.*", "0000:0a:00.3", True),
        ("*:0a:00.*", "0001:0a:00.0", True),
        ("*:0a:00.*", "0000:0a:01.0", False),
        (":0a:00.", "0000:0a:00.7", True),
        (".5", "0000:81:02.5", True),
        (".5", "0000:81:02.4", False),
        ("0000:06:", "0000:06:1f.7", True),
        ("0000:06:", "0000:07:00.0", False),
        ("02", "0000:81:02.1", True),
        ("02", "0000:02:00.0", False),
        ("", "ffff:ff:1f.7", True),
    ],
)
def test_glob_matching(pattern: str, address: str, expected: bool) -> None:
    assert AddressGlob.parse(pattern).matches(A(address)) is expected


# Nova's PciConfigInvalidSpec / PciDeviceWrongAddressFormat texts, verbatim.
_P = "Invalid [pci]device_spec config: "


@pytest.mark.parametrize(
    ("text", "message", "field", "rule"),
    [
        (
            "10000:00:00.0",
            _P + "property domain (10000) is greater than the maximum allowable value (FFFF).",
            "domain",
            "range",
        ),
        (
            "*:100:00.0",
            _P + "property bus (100) is greater than the maximum allowable value (FF).",
            "bus",
            "range",
        ),
        (
            "*:00:20.0",
            _P + "property slot (20) is greater than the maximum allowable value (1F).",
            "slot",
            "range",
        ),
        (
            "*:00:00.8",
            _P + "property func (8) is greater than the maximum allowable value (7).",
            "func",
            "range",
        ),
        (
            "*:0a*:00.0",
            _P + "property bus ('0a*') does not parse as a hex number.",
            "bus",
            "hex",
        ),
        ("*:0a:00.x", _P + "property func ('x') does not parse as a hex number.", "func", "hex"),
        (".  ", _P + "property func ('') does not parse as a hex number.", "func", "hex"),
        ("-1", _P + "property slot ('-1') does not parse as a hex number.", "slot", "hex"),
        ("1:2:3:4.1", "The PCI address 1:2:3:4.1 has an incorrect format.", "address", "format"),
        # Nova checks the function before counting fields
        (
            "1:2:3:4.9",
            _P + "property func (9) is greater than the maximum allowable value (7).",
            "func",
            "range",
        ),
        # then domain, bus, slot in that order
        (
            "zz:yy:xx.1",
            _P + "property domain ('zz') does not parse as a hex number.",
            "domain",
            "hex",
        ),
    ],
)
def test_glob_errors_are_novas(text: str, message: str, field: str, rule: str) -> None:
    with pytest.raises(InvalidSpecAddress) as info:
        AddressGlob.parse(text)
    assert str(info.value) == message
    assert info.value.fields["field"] == field
    assert info.value.fields["rule"] == rule
    assert isinstance(info.value, InvalidSpec)
    assert info.value.code == "pcifleet.spec.invalid_address"


@pytest.mark.parametrize(
    ("text", "single"),
    [
        ("0000:81:00.0", "0000:81:00.0"),
        ("81:00.0", None),
        ("0000:81:00.*", None),
        ("0000:81:00.", None),
    ],
)
def test_glob_single_address(text: str, single: str | None) -> None:
    got = AddressGlob.parse(text).single()
    assert (None if got is None else str(got)) == single


def test_glob_constructed_directly_is_normalized() -> None:
    assert AddressGlob(bus="A", slot="0") == AddressGlob.parse("*:0a:00.*")


# ------------------------------------------------------------------------- regexes


@pytest.mark.parametrize(
    ("spec", "address", "expected"),
    [
        ({"bus": "02", "slot": "01", "function": "[0-2]"}, "0000:02:01.2", True),
        ({"bus": "02", "slot": "01", "function": "[0-2]"}, "0000:02:01.3", False),
        ({"domain": ".*", "bus": "0a"}, "0007:0a:1f.7", True),
        # anchored at the start only (re.match): bus regex "0" matches bus "0a"
        ({"bus": "0"}, "0000:0a:00.0", True),
        ({"bus": "a"}, "0000:0a:00.0", False),
        ({"bus": ".a$"}, "0000:0a:00.0", True),
        # fields are not zero-padded by the spec; the device's are
        ({"slot": "1"}, "0000:00:01.0", False),
        ({"slot": "01"}, "0000:00:01.0", True),
        ({}, "ffff:ff:1f.7", True),
    ],
)
def test_regex_matching(spec: dict[str, str], address: str, expected: bool) -> None:
    assert AddressRegex.parse(spec).matches(A(address)) is expected


@pytest.mark.parametrize(
    ("spec", "field", "rule"),
    [
        ({"domain": "*"}, "domain", "regex"),
        ({"bus": "[6[-7]"}, "bus", "regex"),
        ({"slot": 1}, "slot", "type"),
        ({"func": "1"}, "func", "unknown_key"),
    ],
)
def test_regex_errors_are_novas_wrong_format(
    spec: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(InvalidSpecAddress) as info:
        AddressRegex.parse(spec)
    assert str(info.value) == f"The PCI address {spec} has an incorrect format."
    assert info.value.fields["field"] == field
    assert info.value.fields["rule"] == rule


@pytest.mark.parametrize(
    ("spec", "single"),
    [
        ({"domain": "0000", "bus": "81", "slot": "00", "function": "0"}, "0000:81:00.0"),
        ({"bus": "81", "slot": "00", "function": "0"}, None),
        ({"domain": "0000", "bus": "81", "slot": "0[0]", "function": "0"}, None),
        ({"domain": "0000", "bus": "81", "slot": "20", "function": "0"}, None),
    ],
)
def test_regex_single_address(spec: dict[str, str], single: str | None) -> None:
    got = AddressRegex.parse(spec).single()
    assert (None if got is None else str(got)) == single


def test_regex_constructed_directly_is_checked() -> None:
    with pytest.raises(InvalidSpecAddress) as info:
        AddressRegex(bus=5)  # type: ignore[arg-type]
    assert info.value.fields["rule"] == "type"
    with pytest.raises(InvalidSpecAddress) as info:
        AddressRegex(slot="(")
    assert str(info.value) == (
        "The PCI address {'domain': '.*', 'bus': '.*', 'slot': '(', 'function': '.*'} "
        "has an incorrect format."
    )


def test_regex_str_shows_the_fields_set() -> None:
    assert str(AddressRegex.parse({"bus": "02"})) == "regex(bus='02')"


# ------------------------------------------------------------------ pattern dispatch


def test_parse_address_pattern_dispatches_on_type() -> None:
    assert isinstance(parse_address_pattern("*:0a:00.*"), AddressGlob)
    assert isinstance(parse_address_pattern({"bus": "0a"}), AddressRegex)


@pytest.mark.parametrize("value", [["0000:0a:00.0"], 10, None, 1.5])
def test_parse_address_pattern_rejects_other_types(value: object) -> None:
    with pytest.raises(InvalidSpecAddress) as info:
        parse_address_pattern(value)
    assert str(info.value) == f"The PCI address {value} has an incorrect format."
    assert info.value.fields["rule"] == "type"


# ------------------------------------------------------------------------ properties

addresses = st.builds(
    PciAddress,
    domain=st.integers(0, MAX_DOMAIN),
    bus=st.integers(0, MAX_BUS),
    slot=st.integers(0, MAX_SLOT),
    function=st.integers(0, MAX_FUNC),
)


@given(addresses)
def test_round_trip(address: PciAddress) -> None:
    assert A(str(address)) == address
    assert A(str(address).upper()) == address
    assert len(str(address)) == 12


@given(addresses, addresses)
def test_order_matches_tuple_order(a: PciAddress, b: PciAddress) -> None:
    ta = (a.domain, a.bus, a.slot, a.function)
    tb = (b.domain, b.bus, b.slot, b.function)
    assert (a < b) == (ta < tb)
    assert (a == b) == (ta == tb)
    # the normalized text sorts the same way (fixed width, lower-case hex)
    assert (str(a) < str(b)) == (ta < tb)


@given(addresses)
def test_routing_id_and_offset_round_trip(address: PciAddress) -> None:
    assert PciAddress.from_routing_id(address.domain, address.routing_id) == address
    if address.routing_id >= 8:
        assert address.offset(-8).offset(8) == address


@given(addresses)
def test_single_glob_matches_exactly_its_address(address: PciAddress) -> None:
    glob = AddressGlob.parse(str(address))
    assert glob.single() == address
    assert glob.matches(address)
    other = PciAddress(address.domain, address.bus, address.slot, (address.function + 1) % 8)
    assert not glob.matches(other)
