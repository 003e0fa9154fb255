"""Nova compatibility: ``[pci] alias`` values with Nova's rules and exact messages, flavor
extra specs to requests, and ``[pci] device_spec`` values through the spec parser."""

from __future__ import annotations

import itertools
import json

import pytest

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidGroup, InvalidGroupSet, InvalidSpec, UnknownGroup
from pcifleet.domain.nova import (
    device_spec_from_nova,
    groups_from_nova_alias,
    requests_from_flavor_extra_specs,
)
from pcifleet.domain.request import DeviceMatch, NumaPolicy


def alias(**fields: object) -> str:
    base: dict[str, object] = {"vendor_id": "8086", "product_id": "0443"}
    return json.dumps({**base, **fields})


QAT = alias(name="QuickAssist", device_type="type-PCI", numa_policy="legacy")


def test_single_alias() -> None:
    (group,) = groups_from_nova_alias([QAT])
    assert group.name == "QuickAssist"
    assert group.match == (DeviceMatch.of("8086", "0443"),)
    assert group.device_type is DeviceType.PCI
    assert group.numa_policy is NumaPolicy.LEGACY
    assert group.is_public
    assert group.alternatives == (DeviceMatch.of("8086", "0443", DeviceType.PCI),)


def test_repeated_name_gives_alternatives() -> None:
    second = alias(name="QuickAssist", product_id="0442", device_type="type-PCI")
    (group,) = groups_from_nova_alias([QAT, second])
    assert group.match == (DeviceMatch.of("8086", "0443"), DeviceMatch.of("8086", "0442"))


def test_defaults_strip_and_case() -> None:
    (group,) = groups_from_nova_alias(
        [alias(name=" Cirrus Logic ", vendor_id="10DE", product_id="2330")]
    )
    assert group.name == "Cirrus Logic"
    assert group.numa_policy is NumaPolicy.LEGACY
    assert group.device_type is None
    assert group.match == (DeviceMatch.of("10de", "2330"),)


def test_groups_keep_first_definition_order() -> None:
    names = [g.name for g in groups_from_nova_alias([alias(name="b"), alias(name="a")])]
    assert names == ["b", "a"]


@pytest.mark.parametrize(
    ("value", "stored", "group_level"),
    [
        ("yes", "true", True),
        ("True", "true", True),
        ("0", "false", False),
        (" off ", "false", False),
    ],
)
def test_live_migratable_is_normalized(value: str, stored: str, group_level: bool) -> None:
    (group,) = groups_from_nova_alias([alias(name="a", live_migratable=value)])
    assert group.match == (DeviceMatch.of("8086", "0443", live_migratable=stored),)
    assert group.live_migratable is group_level


def test_mixed_live_migratable_stays_per_alternative() -> None:
    (group,) = groups_from_nova_alias(
        [
            alias(name="a", device_type="type-VF", live_migratable="true"),
            alias(name="a", device_type="type-VF", product_id="0444"),
        ]
    )
    assert group.live_migratable is None
    assert group.alternatives == (
        DeviceMatch.of("8086", "0443", DeviceType.VF, live_migratable="true"),
        DeviceMatch.of("8086", "0444", DeviceType.VF),
    )


def test_placement_fields_lifted_when_agreed() -> None:
    (group,) = groups_from_nova_alias(
        [alias(name="a", resource_class="CUSTOM_QAT", traits="A,B", capability_type="pci")]
    )
    assert group.resource_class == "CUSTOM_QAT"
    assert group.traits == ("A", "B")
    # resource_class / traits / capability_type never take part in matching
    assert group.match == (DeviceMatch.of("8086", "0443"),)


ACCEPTABLE = "'0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (['{"name": '], "Expecting value: line 1 column 10 (char 9)"),
        (["not json"], "Expecting value: line 1 column 1 (char 0)"),
        (['[{"name": "a"}]'], "[{'name': 'a'}] is not of type 'object'"),
        (['"a"'], "'a' is not of type 'object'"),
        (
            [alias(name="a", foo="x")],
            "Additional properties are not allowed ('foo' was unexpected)",
        ),
        (
            [alias(name="a", foo="x", bar="y")],
            "Additional properties are not allowed ('bar', 'foo' were unexpected)",
        ),
        ([alias()], "'name' is a required property"),
        ([alias(name="")], "'' should be non-empty"),
        ([alias(name="x" * 257)], f"'{'x' * 257}' is too long"),
        ([alias(name=3)], "3 is not of type 'string'"),
        ([alias(name=None)], "None is not of type 'string'"),
        ([alias(name="a", vendor_id="0x8086")], "'0x8086' does not match '^([\\\\da-fA-F]{4})$'"),
        ([alias(name="a", product_id="04*")], "'04*' does not match '^([\\\\da-fA-F]{4})$'"),
        ([alias(name="a", product_id=443)], "443 is not of type 'string'"),
        (
            [alias(name="a", device_type="vdpa")],
            "'vdpa' is not one of ['type-PCI', 'type-PF', 'type-VF']",
        ),
        (
            [alias(name="a", numa_policy="strict")],
            "'strict' is not one of ['required', 'legacy', 'preferred', 'socket']",
        ),
        ([alias(name="a", capability_type="usb")], "'usb' is not one of ['pci']"),
        ([alias(name="a", live_migratable=True)], "True is not of type 'string'"),
        ([alias(name="a", traits=["A"])], "['A'] is not of type 'string'"),
        (
            [alias(name="a", live_migratable="maybe")],
            f"Unrecognized value 'maybe', acceptable values are: {ACCEPTABLE}",
        ),
        # jsonschema's best match: errors at the top level win over errors in a property
        (
            [alias(name="a", vendor_id="x", foo="1")],
            "Additional properties are not allowed ('foo' was unexpected)",
        ),
        ([alias(vendor_id="x")], "'name' is a required property"),
        (
            [alias(name="a", numa_policy="required"), alias(name="a", numa_policy="legacy")],
            "NUMA policy mismatch for alias 'a'",
        ),
        (
            [alias(name="a"), alias(name=" a ", numa_policy="socket")],
            "NUMA policy mismatch for alias 'a'",
        ),
        (
            [alias(name="a", device_type="type-PF"), alias(name="a", device_type="type-VF")],
            "Device type mismatch for alias 'a'",
        ),
        (
            [alias(name="a"), alias(name="a")],
            "alias 'a' is defined more than once, so every definition must set device_type "
            "('dev_type')",
        ),
        (
            [alias(name="a", device_type="type-PF"), alias(name="a")],
            "alias 'a' is defined more than once, so every definition must set device_type "
            "('dev_type')",
        ),
    ],
)
def test_alias_errors_carry_novas_reason(values: list[str], reason: str) -> None:
    with pytest.raises(InvalidGroup) as err:
        groups_from_nova_alias(values)
    assert str(err.value) == f"Invalid PCI alias definition: {reason}"
    assert err.value.status == 400


def _no_ids(**fields: object) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("values", "in_placement", "message"),
    [
        (
            [_no_ids(name="b", vendor_id="8086"), _no_ids(name="a"), alias(name="c")],
            False,
            "The PCI alias(es) a,b does not have vendor_id and product_id fields set.",
        ),
        (
            [_no_ids(name="a", resource_class="CUSTOM_X")],
            False,
            "The PCI alias(es) a does not have vendor_id and product_id fields set.",
        ),
        (
            [
                alias(name="x", device_type="type-VF"),
                _no_ids(name="x", device_type="type-VF", product_id="1234"),
            ],
            False,
            "The PCI alias(es) x does not have vendor_id and product_id fields set.",
        ),
        (
            [_no_ids(name="z", product_id="1234"), _no_ids(name="y", resource_class="CUSTOM_Y")],
            True,
            "The PCI alias(es) z does not have vendor_id and product_id fields set or "
            "resource_class field set.",
        ),
        (
            [
                alias(name="m2", device_type="type-PCI"),
                alias(name="m2", device_type="type-PCI", product_id="0444"),
                alias(name="m1", device_type="type-PCI"),
                alias(name="m1", device_type="type-PCI", product_id="0444"),
            ],
            True,
            "The PCI alias(es) m2,m1 have multiple specs but [filter_scheduler]pci_in_placement "
            "is True. The PCI in Placement feature only supports one spec per alias. You can "
            "assign the same resource_class to multiple [pci]device_spec matchers to allow "
            "using different devices for the same alias.",
        ),
    ],
)
def test_alias_set_checks(values: list[str], in_placement: bool, message: str) -> None:
    with pytest.raises(InvalidGroupSet) as err:
        groups_from_nova_alias(values, pci_in_placement=in_placement)
    assert str(err.value) == message
    assert err.value.code == "pcifleet.group.invalid_set"


def test_resource_class_stands_in_for_ids_in_placement_mode() -> None:
    (group,) = groups_from_nova_alias(
        [_no_ids(name="gpu", resource_class="CUSTOM_GPU")], pci_in_placement=True
    )
    assert group.resource_class == "CUSTOM_GPU"
    assert group.match == (DeviceMatch.of(),)


def test_no_alias_values_no_groups() -> None:
    assert groups_from_nova_alias([]) == ()


def test_flavor_extra_specs_to_requests() -> None:
    groups = groups_from_nova_alias(
        [QAT, alias(name="gpu", vendor_id="10de", product_id="2330", numa_policy="preferred")]
    )
    ids = itertools.count(1)
    requests = requests_from_flavor_extra_specs(
        {
            "pci_passthrough:alias": "QuickAssist:2, gpu:1",
            "hw:cpu_policy": "not-read-here",
        },
        groups,
        id_factory=lambda: f"r{next(ids)}",
    )
    assert [(r.requester.name, r.count, r.numa_policy, r.request_id) for r in requests] == [
        ("QuickAssist", 2, NumaPolicy.LEGACY, "r1"),
        ("gpu", 1, NumaPolicy.PREFERRED, "r2"),
    ]
    assert requests[0].alternatives == (DeviceMatch.of("8086", "0443", DeviceType.PCI),)


def test_flavor_policy_overrides_alias_policy() -> None:
    groups = {g.name: g for g in groups_from_nova_alias([QAT])}
    (request,) = requests_from_flavor_extra_specs(
        {"pci_passthrough:alias": "QuickAssist:1", "hw:pci_numa_affinity_policy": "required"},
        groups,
    )
    assert request.numa_policy is NumaPolicy.REQUIRED


def test_undefined_alias() -> None:
    with pytest.raises(UnknownGroup) as err:
        requests_from_flavor_extra_specs({"pci_passthrough:alias": "nope:1"}, [])
    assert str(err.value) == "PCI alias nope is not defined"


def test_no_extra_spec_no_requests() -> None:
    assert requests_from_flavor_extra_specs({}, groups_from_nova_alias([QAT])) == ()


def test_device_spec_values_go_through_the_spec_parser() -> None:
    specs = device_spec_from_nova(
        [
            '{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"}',
            '[{"vendor_id": "10de"}, {"address": "0000:81:00.*"}]',
        ]
    )
    assert len(specs) == 3


def test_device_spec_errors_are_novas() -> None:
    with pytest.raises(InvalidSpec) as err:
        device_spec_from_nova(["{"])
    assert str(err.value) == "Invalid [pci]device_spec config: Invalid entry: '{'"
