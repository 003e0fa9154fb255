"""Flavors as stored: Nova extra specs validated and parsed, shorthands folded in, admin-only
changes; on SQLite and PostgreSQL (the ``sessions`` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.services.flavors import FlavorService, merge_extra_specs, parse_flavor
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal, Role
from pcifleet.domain.errors import AlreadyExists, Forbidden, InvalidFlavor, NotFound
from pcifleet.domain.flavor import GroupCount
from pcifleet.domain.placement import CpuPolicy
from pcifleet.domain.request import NumaPolicy

ALICE = Principal(Role.MEMBER, project="alice")
AGENT = Principal(Role.AGENT, host="h1")


@pytest.fixture
def svc(sessions: sessionmaker[Session]) -> FlavorService:
    return FlavorService(sessions)


def test_create_parses_nova_extra_specs_and_round_trips(svc: FlavorService) -> None:
    specs = {
        "pci_passthrough:alias": "gpu:1,qat:2",
        "hw:pci_numa_affinity_policy": "required",
        "hw:cpu_policy": "dedicated",
        "hw:numa_nodes": "2",
        "hw:mem_page_size": "1GB",
        "quota:disk_read_bytes_sec": "10240000",
    }
    created = svc.create(LOCAL_ADMIN, parse_flavor("nfv", 8, 16384, specs), description="NFV")
    shown = svc.show(ALICE, "nfv").flavor
    assert shown == created.flavor
    assert shown.device_groups == (GroupCount("gpu", 1), GroupCount("qat", 2))
    assert (shown.cpu_policy, shown.numa_nodes, shown.page_size) == (
        CpuPolicy.DEDICATED,
        2,
        1048576,
    )
    assert shown.pci_numa_policy is NumaPolicy.REQUIRED
    assert dict(shown.extra_specs) == specs
    assert svc.get("nfv").description == "NFV"


@pytest.mark.parametrize(
    ("specs", "key"),
    [
        ({"pci_passthrough:alias": "gpu: 1"}, "pci_passthrough:alias"),
        ({"pci_passthrough:alias": "gpu"}, "pci_passthrough:alias"),
        ({"hw:pci_numa_affinity_policy": "always"}, "hw:pci_numa_affinity_policy"),
        ({"hw:cpu_policy": "mixed"}, "hw:cpu_policy"),
        ({"hw:numa_nodes": "0"}, "hw:numa_nodes"),
        ({"hw:numa_nodes": "3"}, "hw:numa_nodes"),
        ({"hw:mem_page_size": "huge"}, "hw:mem_page_size"),
    ],
)
def test_invalid_extra_specs_name_the_key(specs: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidFlavor) as caught:
        parse_flavor("bad", 4, 4096, specs)
    assert caught.value.fields["field"] == key


@pytest.mark.parametrize(
    ("shorthands", "specs", "expected"),
    [
        ({"numa_nodes": 2}, {}, {"hw:numa_nodes": "2"}),
        ({"cpu_policy": "dedicated"}, {"hw:numa_nodes": "1"}, {"hw:cpu_policy": "dedicated"}),
        ({"hugepage_size": "2MB"}, {"hw:mem_page_size": "2MB"}, {"hw:mem_page_size": "2MB"}),
        ({"numa_nodes": None}, {"x": "y"}, {"x": "y"}),
    ],
)
def test_shorthands_fold_into_extra_specs(
    shorthands: dict[str, object], specs: dict[str, str], expected: dict[str, str]
) -> None:
    assert merge_extra_specs(specs, shorthands).items() >= expected.items()


def test_contradicting_shorthand_names_the_extra_spec() -> None:
    with pytest.raises(InvalidFlavor, match="contradicts") as caught:
        merge_extra_specs({"hw:numa_nodes": "1"}, {"numa_nodes": 2})
    assert caught.value.fields["field"] == "hw:numa_nodes"


def test_only_admins_create_and_delete(svc: FlavorService) -> None:
    flavor = parse_flavor("small", 1, 512)
    with pytest.raises(Forbidden):
        svc.create(ALICE, flavor)
    svc.create(LOCAL_ADMIN, flavor)
    with pytest.raises(Forbidden):
        svc.delete(ALICE, "small")
    with pytest.raises(Forbidden):
        svc.list(AGENT)
    assert [f.name for f in svc.list(ALICE)] == ["small"]


def test_names_are_unique_and_delete_removes(svc: FlavorService) -> None:
    svc.create(LOCAL_ADMIN, parse_flavor("small", 1, 512))
    with pytest.raises(AlreadyExists):
        svc.create(LOCAL_ADMIN, parse_flavor("small", 2, 1024))
    svc.delete(LOCAL_ADMIN, "small")
    with pytest.raises(NotFound):
        svc.show(LOCAL_ADMIN, "small")
    with pytest.raises(NotFound):
        svc.delete(LOCAL_ADMIN, "small")


def test_list_is_sorted_by_name(svc: FlavorService) -> None:
    for name in ("medium", "large", "small"):
        svc.create(LOCAL_ADMIN, parse_flavor(name, 2, 2048))
    assert [f.name for f in svc.list(LOCAL_ADMIN)] == ["large", "medium", "small"]
