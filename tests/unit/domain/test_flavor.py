"""Flavors: Nova extra specs parsed into fields, device requests and NUMA policy precedence."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import (
    InvalidFlavor,
    NumaPolicyConflict,
    UnknownGroup,
)
from pcifleet.domain.flavor import (
    PCI_ALIAS_PATTERN,
    CpuPolicy,
    Flavor,
    GroupCount,
    PageSize,
    PageSizeKind,
    device_requests_for_flavor,
    instance_pci_numa_policy,
    parse_page_size,
    parse_pci_alias_spec,
    validate_extra_specs,
)
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.request import DeviceMatch, NumaPolicy, Requester, RequesterKind


def counter() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"req-{next(numbers)}"


def flavor(**specs: str) -> Flavor:
    return Flavor.from_extra_specs(
        "f", 4, 4096, {k.replace("__", ":"): v for k, v in specs.items()}
    )


def test_plain_flavor_defaults() -> None:
    f = Flavor.from_extra_specs("m1.small", 2, 2048)
    assert (f.numa_nodes, f.cpu_policy, f.page_size, f.pci_numa_policy) == (
        None,
        CpuPolicy.SHARED,
        None,
        None,
    )
    assert f.device_groups == ()
    assert f.guest_numa_nodes == 1


def test_extra_specs_parsed_into_fields() -> None:
    specs = {
        "hw:numa_nodes": "2",
        "hw:cpu_policy": "dedicated",
        "hw:mem_page_size": "1GB",
        "hw:pci_numa_affinity_policy": "socket",
        "pci_passthrough:alias": "gpu:1, qat : 2",
        "quota:vif_inbound_average": "100",
    }
    f = Flavor.from_extra_specs("nfv", 8, 8192, specs)
    assert f.numa_nodes == 2 and f.guest_numa_nodes == 2
    assert f.cpu_policy is CpuPolicy.DEDICATED
    assert f.page_size == 1048576
    assert f.pci_numa_policy is NumaPolicy.SOCKET
    assert f.device_groups == (GroupCount("gpu", 1), GroupCount("qat", 2))
    assert dict(f.extra_specs) == specs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("small", PageSizeKind.SMALL),
        ("large", PageSizeKind.LARGE),
        ("any", PageSizeKind.ANY),
        ("2048", 2048),
        ("4", 4),
        ("2MB", 2048),
        ("2MiB", 2048),
        ("1GB", 1048576),
        ("1GiB", 1048576),
        ("2048KB", 2048),
        ("4096B", 4),
        ("16Mbit", 2048),
    ],
)
def test_page_sizes(value: str, expected: PageSize) -> None:
    assert parse_page_size(value) == expected


@pytest.mark.parametrize("value", ["huge", "2M", "0", "0MB", "512B", "2kB", "1.5GB", "", "Large"])
def test_invalid_page_sizes_use_novas_message(value: str) -> None:
    with pytest.raises(InvalidFlavor) as err:
        parse_page_size(value)
    assert str(err.value) == f"Invalid memory page size '{value}'"
    assert err.value.fields["field"] == "hw:mem_page_size"


@pytest.mark.parametrize(
    ("specs", "message", "field"),
    [
        (
            {"hw__numa_nodes": "0"},
            "The property 'numa_nodes' cannot be '0'. It must be a number greater than 0",
            "hw:numa_nodes",
        ),
        (
            {"hw__numa_nodes": "two"},
            "The property 'numa_nodes' cannot be 'two'. It must be a number greater than 0",
            "hw:numa_nodes",
        ),
        (
            {"hw__numa_nodes": "3"},
            "Instance CPUs and/or memory cannot be evenly distributed across instance NUMA "
            "nodes. Explicit assignment of CPUs and memory to nodes is required",
            "hw:numa_nodes",
        ),
        (
            {"hw__cpu_policy": "mixed"},
            "CPU policy requested from 'flavor extra specs' is invalid, given: 'mixed', "
            "available: 'shared, dedicated'.",
            "hw:cpu_policy",
        ),
        (
            {"hw__pci_numa_affinity_policy": "strict"},
            "Invalid PCI NUMA affinity configured: strict",
            "hw:pci_numa_affinity_policy",
        ),
        (
            {"pci_passthrough__alias": "gpu"},
            "pci_passthrough:alias: item 'gpu' must be '<group>:<count>'",
            "pci_passthrough:alias",
        ),
        (
            {"pci_passthrough__alias": "gpu:1:2"},
            "pci_passthrough:alias: item 'gpu:1:2' must be '<group>:<count>'",
            "pci_passthrough:alias",
        ),
        (
            {"pci_passthrough__alias": ""},
            "pci_passthrough:alias: item '' must be '<group>:<count>'",
            "pci_passthrough:alias",
        ),
        (
            {"pci_passthrough__alias": "gpu:x"},
            "pci_passthrough:alias: item 'gpu:x' needs a group name and a count of at least 1",
            "pci_passthrough:alias",
        ),
        (
            {"pci_passthrough__alias": "gpu:0"},
            "pci_passthrough:alias: item 'gpu:0' needs a group name and a count of at least 1",
            "pci_passthrough:alias",
        ),
        (
            {"pci_passthrough__alias": " :1"},
            "pci_passthrough:alias: item ' :1' needs a group name and a count of at least 1",
            "pci_passthrough:alias",
        ),
    ],
)
def test_extra_spec_errors(specs: dict[str, str], message: str, field: str) -> None:
    with pytest.raises(InvalidFlavor) as err:
        flavor(**specs)
    assert str(err.value) == message
    assert err.value.fields["field"] == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": " "}, "name"),
        ({"vcpus": 0}, "vcpus"),
        ({"memory_mb": 0}, "memory_mb"),
        ({"page_size": 0}, "hw:mem_page_size"),
        ({"device_groups": (GroupCount("gpu", 0),)}, "pci_passthrough:alias"),
        ({"numa_nodes": 0}, "hw:numa_nodes"),
    ],
)
def test_direct_construction_is_validated(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "f", "vcpus": 2, "memory_mb": 1024, **kwargs}
    with pytest.raises(InvalidFlavor) as err:
        Flavor(**args)  # type: ignore[arg-type]
    assert err.value.fields["field"] == field


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a:2", (GroupCount("a", 2),)),
        ("a:2,b:1", (GroupCount("a", 2), GroupCount("b", 1))),
        ("a: 2", (GroupCount("a", 2),)),
        (" a :2 , b:1", (GroupCount("a", 2), GroupCount("b", 1))),
        ("a:1,a:1", (GroupCount("a", 1), GroupCount("a", 1))),
        ("Cirrus Logic:1", (GroupCount("Cirrus Logic", 1),)),
    ],
)
def test_internal_alias_parser_is_tolerant(value: str, expected: tuple[GroupCount, ...]) -> None:
    assert parse_pci_alias_spec(value) == expected


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("a:2", True),
        ("a:2,b:1", True),
        ("a:2 , b:1", True),
        ("a b:2", True),
        ("a: 2", False),
        ("a:2,", False),
        ("a", False),
        ("a:-1", False),
        (":1", False),
    ],
)
def test_api_validator_fullmatches_novas_pattern(value: str, valid: bool) -> None:
    if valid:
        validate_extra_specs({"pci_passthrough:alias": value})
        return
    with pytest.raises(InvalidFlavor) as err:
        validate_extra_specs({"pci_passthrough:alias": value})
    assert str(err.value) == (
        f"Validation failed; '{value}' is not of the format '{PCI_ALIAS_PATTERN}'."
    )
    assert err.value.fields["rule"] == "pattern"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "hw:pci_numa_affinity_policy",
            "strict",
            "'strict' is not one of: required, preferred, legacy, socket.",
        ),
        ("hw:cpu_policy", "mixed", "'mixed' is not one of: shared, dedicated."),
        ("hw:numa_nodes", "x", "'x' is not a valid integer value."),
        ("hw:numa_nodes", "0", "'0' is less than the min value of '1'."),
        (
            "hw:mem_page_size",
            "huge",
            "'huge' is not of the format '(large|small|any|\\d+([kKMGT]i?)?(b|bit|B)?)'.",
        ),
    ],
)
def test_api_validator_messages(key: str, value: str, message: str) -> None:
    with pytest.raises(InvalidFlavor) as err:
        validate_extra_specs({key: value})
    assert str(err.value) == f"Validation failed; {message}"
    assert err.value.fields["field"] == key


def test_api_validator_accepts_good_and_unknown_specs() -> None:
    validate_extra_specs(
        {
            "hw:pci_numa_affinity_policy": "preferred",
            "hw:cpu_policy": "dedicated",
            "hw:numa_nodes": "2",
            "hw:mem_page_size": "2MB",
            "hw:whatever": "x",
        }
    )


GPU = DeviceGroup(
    "gpu",
    (DeviceMatch.of("10de", "2330"), DeviceMatch.of("10de", "2331")),
    device_type=DeviceType.PCI,
    numa_policy=NumaPolicy.PREFERRED,
)
QAT = DeviceGroup("qat", (DeviceMatch.of("8086", "0443"),))
PRIVATE = DeviceGroup("mine", (DeviceMatch.of("8086", "0443"),), owner="p1")
GROUPS = {g.name: g for g in (GPU, QAT, PRIVATE)}


def test_requests_one_per_item_in_order() -> None:
    f = flavor(pci_passthrough__alias="gpu:2,qat:1,gpu:1")
    requests = device_requests_for_flavor(f, GROUPS, None, id_factory=counter())
    assert [(r.requester, r.count, r.request_id) for r in requests] == [
        (Requester(RequesterKind.GROUP, "gpu"), 2, "req-1"),
        (Requester(RequesterKind.GROUP, "qat"), 1, "req-2"),
        (Requester(RequesterKind.GROUP, "gpu"), 1, "req-3"),
    ]
    assert requests[0].alternatives == GPU.alternatives
    assert all(m.dev_type is DeviceType.PCI for m in requests[0].alternatives)
    assert not requests[0].from_port


def test_no_alias_no_requests() -> None:
    assert device_requests_for_flavor(flavor(), GROUPS, None) == ()


@pytest.mark.parametrize(
    ("flavor_policy", "image_policy", "expected"),
    [
        # group policy applies when neither flavor nor image sets one
        (None, None, {"gpu": NumaPolicy.PREFERRED, "qat": NumaPolicy.LEGACY}),
        ("required", None, {"gpu": NumaPolicy.REQUIRED, "qat": NumaPolicy.REQUIRED}),
        (None, "socket", {"gpu": NumaPolicy.SOCKET, "qat": NumaPolicy.SOCKET}),
        (None, NumaPolicy.LEGACY, {"gpu": NumaPolicy.LEGACY, "qat": NumaPolicy.LEGACY}),
        ("socket", "socket", {"gpu": NumaPolicy.SOCKET, "qat": NumaPolicy.SOCKET}),
    ],
)
def test_numa_policy_precedence(
    flavor_policy: str | None,
    image_policy: NumaPolicy | str | None,
    expected: dict[str, NumaPolicy],
) -> None:
    specs = {"pci_passthrough__alias": "gpu:1,qat:1"}
    if flavor_policy is not None:
        specs["hw__pci_numa_affinity_policy"] = flavor_policy
    requests = device_requests_for_flavor(flavor(**specs), GROUPS, None, image_policy)
    assert {r.requester.name: r.numa_policy for r in requests} == expected


def test_image_may_not_contradict_flavor() -> None:
    f = flavor(pci_passthrough__alias="gpu:1", hw__pci_numa_affinity_policy="required")
    with pytest.raises(NumaPolicyConflict) as err:
        device_requests_for_flavor(f, GROUPS, None, "preferred")
    assert str(err.value) == (
        "Image property 'hw_pci_numa_affinity_policy' is not permitted to override the "
        "'hw:pci_numa_affinity_policy' flavor extra spec."
    )
    assert err.value.status == 403


def test_invalid_image_policy() -> None:
    with pytest.raises(InvalidFlavor) as err:
        instance_pci_numa_policy(None, "strict")
    assert str(err.value) == "Invalid PCI NUMA affinity configured: strict"
    assert err.value.fields["field"] == "hw_pci_numa_affinity_policy"


@pytest.mark.parametrize(
    ("alias", "project", "missing"),
    [
        ("nope:1", None, "nope"),
        ("gpu:1,nope:1", None, "nope"),
        ("mine:1", "p2", "mine"),
        ("mine:1", None, "mine"),
    ],
)
def test_unknown_or_foreign_group(alias: str, project: str | None, missing: str) -> None:
    with pytest.raises(UnknownGroup) as err:
        device_requests_for_flavor(flavor(pci_passthrough__alias=alias), GROUPS, project)
    assert str(err.value) == f"PCI alias {missing} is not defined"
    assert err.value.status == 400


def test_private_group_for_its_owner() -> None:
    (request,) = device_requests_for_flavor(flavor(pci_passthrough__alias="mine:3"), GROUPS, "p1")
    assert request.count == 3
    assert request.requester.name == "mine"


_names = st.text(
    st.characters(codec="ascii", categories=["L", "N", "Zs"]), min_size=1, max_size=10
).filter(lambda s: s.strip() == s and s)
_items = st.lists(st.tuples(_names, st.integers(1, 64)), min_size=1, max_size=5)


@given(_items, st.sampled_from([",", ", ", " ,"]))
def test_alias_spec_round_trip(items: list[tuple[str, int]], sep: str) -> None:
    text = sep.join(f"{name}:{count}" for name, count in items)
    parsed = parse_pci_alias_spec(text)
    assert parsed == tuple(GroupCount(n, c) for n, c in items)
    validate_extra_specs({"pci_passthrough:alias": text})
