"""Device groups: validation, alternatives, visibility, native format and config files."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidGroup
from pcifleet.domain.group import DeviceGroup, load_groups
from pcifleet.domain.request import DeviceMatch, NumaPolicy

GPU = DeviceMatch.of("10de", "2330")


def test_defaults_and_normalization() -> None:
    group = DeviceGroup(
        "  gpu ",
        (DeviceMatch.of("10DE", "2330"),),
        traits=(" CUSTOM_A ", "CUSTOM_B"),
        resource_class=" CUSTOM_GPU ",
    )
    assert group.name == "gpu"
    assert group.match == (GPU,)
    assert group.numa_policy is NumaPolicy.LEGACY
    assert group.device_type is None
    assert group.live_migratable is None
    assert group.traits == ("CUSTOM_A", "CUSTOM_B")
    assert group.resource_class == "CUSTOM_GPU"
    assert group.is_public


@pytest.mark.parametrize(
    ("kwargs", "field", "rule", "text"),
    [
        ({"name": ""}, "name", "length", "name: must be 1..256 characters"),
        ({"name": "   "}, "name", "length", "name: must be 1..256 characters"),
        ({"name": "x" * 257}, "name", "length", "must be 1..256"),
        ({"match": ()}, "match", "required", "at least one alternative"),
        (
            {"match": (DeviceMatch.of("10d", "2330"),)},
            "vendor_id",
            "pattern",
            "'10d' is not 4 hex digits",
        ),
        (
            {"match": (DeviceMatch.of("10de", "0x23"),)},
            "product_id",
            "pattern",
            "'0x23' is not 4 hex digits",
        ),
        ({"device_type": DeviceType.VDPA}, "device_type", "enum", "type-PCI, type-PF, type-VF"),
        (
            {"match": (DeviceMatch.of("10de", "2330", DeviceType.VF),)},
            "device_type",
            "consistent",
            "an alternative asks for type-VF",
        ),
        ({"owner": " "}, "owner", "non_empty", "must not be empty"),
        ({"resource_class": ""}, "resource_class", "non_empty", "must not be empty"),
        ({"traits": ("A", " ")}, "traits", "non_empty", "trait names must not be empty"),
    ],
)
def test_invalid_groups_name_field_and_rule(
    kwargs: dict[str, Any], field: str, rule: str, text: str
) -> None:
    args: dict[str, Any] = {"name": "gpu", "match": (GPU,), **kwargs}
    with pytest.raises(InvalidGroup) as err:
        DeviceGroup(**args)
    assert err.value.fields["field"] == field
    assert err.value.fields["rule"] == rule
    assert text in str(err.value)
    assert str(err.value).startswith("Invalid PCI alias definition: ")


def test_name_of_256_chars_is_fine() -> None:
    assert len(DeviceGroup("x" * 256, (GPU,)).name) == 256


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (DeviceGroup("g", (GPU,)), (GPU,)),
        (
            DeviceGroup("g", (GPU,), device_type=DeviceType.PCI, live_migratable=True),
            (DeviceMatch.of("10de", "2330", DeviceType.PCI, live_migratable="true"),),
        ),
        (
            DeviceGroup("g", (GPU,), live_migratable=False),
            (DeviceMatch.of("10de", "2330", live_migratable="false"),),
        ),
        # an alternative's own live_migratable wins over the group's
        (
            DeviceGroup(
                "g",
                (DeviceMatch.of("10de", "2330", live_migratable="false"), GPU),
                live_migratable=True,
            ),
            (
                DeviceMatch.of("10de", "2330", live_migratable="false"),
                DeviceMatch.of("10de", "2330", live_migratable="true"),
            ),
        ),
    ],
)
def test_alternatives(group: DeviceGroup, expected: tuple[DeviceMatch, ...]) -> None:
    assert group.alternatives == expected


@pytest.mark.parametrize(
    ("owner", "project", "visible"),
    [
        (None, None, True),
        (None, "p1", True),
        ("p1", "p1", True),
        ("p1", "p2", False),
        ("p1", None, False),
    ],
)
def test_visibility(owner: str | None, project: str | None, visible: bool) -> None:
    assert DeviceGroup("g", (GPU,), owner=owner).visible_to(project) is visible


FULL = {
    "name": "gpu",
    "match": [
        {"vendor_id": "10de", "product_id": "2330"},
        {"vendor_id": "10de", "product_id": "2331", "tags": {"physical_network": "physnet1"}},
    ],
    "device_type": "type-PCI",
    "numa_policy": "required",
    "live_migratable": False,
    "resource_class": "CUSTOM_GPU",
    "traits": ["CUSTOM_A100"],
    "owner": "project-a",
}


def test_native_format_round_trip() -> None:
    group = DeviceGroup.from_dict(FULL)
    assert group.device_type is DeviceType.PCI
    assert group.numa_policy is NumaPolicy.REQUIRED
    assert group.match[1] == DeviceMatch.of("10de", "2331", physical_network="physnet1")
    assert group.owner == "project-a"
    assert group.to_dict() == FULL
    assert DeviceGroup.from_dict(group.to_dict()) == group


def test_native_format_minimal_and_comma_traits() -> None:
    group = DeviceGroup.from_dict(
        {"name": "qat", "match": {"vendor_id": "8086", "product_id": "0443"}, "traits": "A, B"}
    )
    assert group.match == (DeviceMatch.of("8086", "0443"),)
    assert group.traits == ("A", "B")
    assert group.owner is None
    assert group.to_dict()["owner"] is None


@pytest.mark.parametrize(
    ("data", "field", "rule"),
    [
        ([], "group", "type"),
        ({"match": [{}]}, "name", "required"),
        ({"name": 3, "match": [{}]}, "name", "type"),
        ({"name": "g"}, "match", "required"),
        ({"name": "g", "match": "10de"}, "match", "type"),
        ({"name": "g", "match": [3]}, "match", "type"),
        ({"name": "g", "match": [{"vendor": "10de"}]}, "match.vendor", "unknown_key"),
        ({"name": "g", "match": [{"tags": {"a": 1}}]}, "match.tags", "type"),
        ({"name": "g", "match": [{}], "colour": "red"}, "colour", "unknown_key"),
        ({"name": "g", "match": [{}], "numa_policy": "strict"}, "numa_policy", "enum"),
        ({"name": "g", "match": [{}], "device_type": "type-X"}, "device_type", "enum"),
        ({"name": "g", "match": [{}], "live_migratable": "yes"}, "live_migratable", "type"),
        ({"name": "g", "match": [{}], "traits": [1]}, "traits", "type"),
        ({"name": "g", "match": [{}], "owner": 7}, "owner", "type"),
    ],
)
def test_native_format_errors(data: object, field: str, rule: str) -> None:
    with pytest.raises(InvalidGroup) as err:
        DeviceGroup.from_dict(data)
    assert (err.value.fields["field"], err.value.fields["rule"]) == (field, rule)
    assert field in str(err.value)


def test_enum_error_lists_allowed_values() -> None:
    with pytest.raises(InvalidGroup) as err:
        DeviceGroup.from_dict({"name": "g", "match": [{}], "numa_policy": "strict"})
    assert str(err.value) == (
        "Invalid PCI alias definition: group 'g': numa_policy: 'strict' is not one of: "
        "required, socket, preferred, legacy"
    )


TOML = """
[[groups]]
name = "gpu"
device_type = "type-PCI"
numa_policy = "required"

[[groups.match]]
vendor_id = "10de"
product_id = "2330"

[[groups]]
name = "nic"
device_type = "type-VF"
owner = "tenant-1"
live_migratable = true

[[groups.match]]
vendor_id = "8086"
product_id = "154c"
tags = { physical_network = "physnet1" }
"""

YAML = """
groups:
  - name: gpu
    device_type: type-PCI
    numa_policy: required
    match:
      - {vendor_id: "10de", product_id: "2330"}
  - name: nic
    device_type: type-VF
    owner: tenant-1
    live_migratable: true
    match:
      - vendor_id: "8086"
        product_id: "154c"
        tags: {physical_network: physnet1}
"""


@pytest.mark.parametrize(("text", "fmt"), [(TOML, "toml"), (YAML, "yaml")])
def test_load_groups(text: str, fmt: str) -> None:
    gpu, nic = load_groups(text, fmt)
    assert gpu == DeviceGroup(
        "gpu", (GPU,), device_type=DeviceType.PCI, numa_policy=NumaPolicy.REQUIRED
    )
    assert nic.owner == "tenant-1"
    assert nic.alternatives == (
        DeviceMatch.of(
            "8086", "154c", DeviceType.VF, live_migratable="true", physical_network="physnet1"
        ),
    )


@pytest.mark.parametrize(
    ("text", "fmt", "field", "rule", "fragment"),
    [
        ("[[groups]\n", "toml", "groups", "syntax", "cannot parse toml"),
        ("groups: [", "yaml", "groups", "syntax", "cannot parse yaml"),
        ("[other]\n", "toml", "groups", "shape", "only a 'groups' list"),
        ("- a\n", "yaml", "groups", "shape", "only a 'groups' list"),
        ("groups: 3\n", "yaml", "groups", "type", "expected a list"),
        ("", "ini", "format", "enum", "'ini' is not one of: toml, yaml"),
        (
            "groups:\n  - {name: g, match: [{}]}\n  - {name: g, match: [{}]}\n",
            "yaml",
            "name",
            "unique",
            "group 'g': name: defined more than once",
        ),
    ],
)
def test_load_groups_errors(text: str, fmt: str, field: str, rule: str, fragment: str) -> None:
    with pytest.raises(InvalidGroup) as err:
        load_groups(text, fmt)
    assert (err.value.fields["field"], err.value.fields["rule"]) == (field, rule)
    assert fragment in str(err.value)


@pytest.mark.parametrize(("text", "fmt"), [("", "toml"), ("", "yaml"), ("groups: []", "yaml")])
def test_empty_config_has_no_groups(text: str, fmt: str) -> None:
    assert load_groups(text, fmt) == ()


_hex4 = st.text("0123456789abcdef", min_size=4, max_size=4)
_word = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)
_matches = st.builds(
    lambda v, p, tags: DeviceMatch.of(v, p, **tags),
    st.none() | _hex4,
    st.none() | _hex4,
    st.dictionaries(st.sampled_from(["physical_network", "trusted", "x"]), _word, max_size=2),
)
_groups = st.builds(
    DeviceGroup,
    name=_word,
    match=st.lists(_matches, min_size=1, max_size=3).map(tuple),
    device_type=st.none() | st.sampled_from([DeviceType.PCI, DeviceType.PF, DeviceType.VF]),
    numa_policy=st.sampled_from(NumaPolicy),
    live_migratable=st.none() | st.booleans(),
    resource_class=st.none() | _word,
    traits=st.lists(_word, max_size=3).map(tuple),
    owner=st.none() | _word,
)


@given(_groups)
def test_native_format_round_trips(group: DeviceGroup) -> None:
    assert DeviceGroup.from_dict(group.to_dict()) == group
    assert len(group.alternatives) == len(group.match)
    assert all(alt.dev_type is group.device_type for alt in group.alternatives)
