"""Device groups as stored: validation through the domain, visibility, ownership, quotas,
loading from configuration; on SQLite and PostgreSQL (the ``sessions`` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.services.groups import SOURCE_CONFIG, GroupService, read_groups_file
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal, Role
from pcifleet.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidGroup,
    NotFound,
    UnknownGroup,
)
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.request import NumaPolicy

ADMIN = LOCAL_ADMIN
ALICE = Principal(Role.MEMBER, project="alice")
BOB = Principal(Role.MEMBER, project="bob")
AGENT = Principal(Role.AGENT, host="h1")


def group(name: str, owner: str | None = None, **extra: object) -> DeviceGroup:
    return DeviceGroup.from_dict(
        {"name": name, "match": [{"vendor_id": "10DE", "product_id": "2330"}], "owner": owner}
        | extra
    )


@pytest.fixture
def svc(sessions: sessionmaker[Session]) -> GroupService:
    return GroupService(sessions)


def test_create_then_show_round_trips_the_domain_group(svc: GroupService) -> None:
    wanted = group("gpu", numa_policy="required", traits=["CUSTOM_A100"], live_migratable=False)
    created = svc.create(ADMIN, wanted, description="A100 GPUs")
    shown = svc.show(ADMIN, "gpu")
    assert shown.group == wanted == created.group
    assert shown.group.match[0].vendor_id == "10de"
    assert (shown.description, shown.source, shown.id) == ("A100 GPUs", "api", created.id)


def test_names_are_unique(svc: GroupService) -> None:
    svc.create(ADMIN, group("gpu"))
    with pytest.raises(AlreadyExists, match="gpu"):
        svc.create(ADMIN, group("gpu"))


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        (ADMIN, ["a-public", "b-alice", "c-bob"]),
        (ALICE, ["a-public", "b-alice"]),
        (BOB, ["a-public", "c-bob"]),
    ],
)
def test_list_shows_public_and_own_private_groups(
    svc: GroupService, who: Principal, visible: list[str]
) -> None:
    svc.create(ADMIN, group("a-public"))
    svc.create(ADMIN, group("b-alice", owner="alice"))
    svc.create(BOB, group("c-bob"))
    assert [r.name for r in svc.list(who)] == visible


def test_admin_may_narrow_the_list_to_one_project(svc: GroupService) -> None:
    svc.create(ADMIN, group("a-public"))
    svc.create(ADMIN, group("b-alice", owner="alice"))
    svc.create(ADMIN, group("c-bob", owner="bob"))
    assert [r.name for r in svc.list(ADMIN, project="bob")] == ["a-public", "c-bob"]


def test_private_group_of_another_project_is_not_found(svc: GroupService) -> None:
    svc.create(ALICE, group("mine"))
    with pytest.raises(NotFound):
        svc.show(BOB, "mine")
    with pytest.raises(NotFound):
        svc.delete(BOB, "mine")


def test_member_creates_private_groups_of_its_own_project_only(svc: GroupService) -> None:
    assert svc.create(ALICE, group("mine")).group.owner == "alice"
    with pytest.raises(Forbidden):
        svc.create(ALICE, group("theirs", owner="bob"))


def test_member_may_not_change_public_groups(svc: GroupService) -> None:
    svc.create(ADMIN, group("gpu"))
    with pytest.raises(Forbidden):
        svc.update(ALICE, "gpu", {"numa_policy": "required"})
    with pytest.raises(Forbidden):
        svc.delete(ALICE, "gpu")


def test_agents_do_not_read_groups(svc: GroupService) -> None:
    with pytest.raises(Forbidden):
        svc.list(AGENT)


def test_update_validates_the_whole_group(svc: GroupService) -> None:
    svc.create(ALICE, group("mine"))
    updated = svc.update(ALICE, "mine", {"numa_policy": "socket"}, description="now socket")
    assert updated.group.numa_policy is NumaPolicy.SOCKET
    assert updated.description == "now socket"
    with pytest.raises(InvalidGroup, match="numa_policy"):
        svc.update(ALICE, "mine", {"numa_policy": "sometimes"})
    with pytest.raises(InvalidGroup, match="name"):
        svc.update(ALICE, "mine", {"name": "other"})
    with pytest.raises(Forbidden):
        svc.update(ALICE, "mine", {"owner": None})
    assert svc.show(ALICE, "mine").group.numa_policy is NumaPolicy.SOCKET


def test_delete_removes_the_group_and_its_quotas(svc: GroupService) -> None:
    svc.create(ADMIN, group("gpu"))
    svc.set_quota(ADMIN, "gpu", "alice", 2)
    svc.delete(ADMIN, "gpu")
    with pytest.raises(NotFound):
        svc.show(ADMIN, "gpu")
    svc.create(ADMIN, group("gpu"))
    assert svc.show(ADMIN, "gpu").quotas == ()


def test_quotas_are_set_changed_removed_and_seen_per_project(svc: GroupService) -> None:
    svc.create(ADMIN, group("gpu"))
    svc.set_quota(ADMIN, "gpu", "alice", 2)
    svc.set_quota(ADMIN, "gpu", "bob", 1)
    assert svc.set_quota(ADMIN, "gpu", "alice", 3).quotas == (("alice", 3), ("bob", 1))
    assert svc.show(ALICE, "gpu").quotas == (("alice", 3),)
    assert svc.quota_limit("gpu", "alice") == 3
    assert svc.quota_limit("gpu", "carol") is None
    assert svc.set_quota(ADMIN, "gpu", "alice", None).quotas == (("bob", 1),)
    with pytest.raises(Forbidden):
        svc.set_quota(ALICE, "gpu", "alice", 10)
    with pytest.raises(InvalidGroup, match="limit"):
        svc.set_quota(ADMIN, "gpu", "alice", -1)


def test_resolve_hides_private_groups_of_other_projects(svc: GroupService) -> None:
    svc.create(ADMIN, group("gpu"))
    svc.create(BOB, group("secret"))
    assert set(svc.resolve("bob", ["gpu", "secret"])) == {"gpu", "secret"}
    with pytest.raises(UnknownGroup, match="PCI alias secret is not defined"):
        svc.resolve("alice", ["gpu", "secret"])


def test_load_creates_then_replaces_groups(svc: GroupService) -> None:
    first = svc.load([group("gpu"), group("qat")])
    assert (first.created, first.updated) == (("gpu", "qat"), ())
    second = svc.load([group("gpu", numa_policy="preferred")])
    assert (second.created, second.updated) == ((), ("gpu",))
    shown = svc.show(ADMIN, "gpu")
    assert (shown.group.numa_policy, shown.source) == (NumaPolicy.PREFERRED, SOURCE_CONFIG)


NATIVE_TOML = """
[[groups]]
name = "gpu"
numa_policy = "required"
[[groups.match]]
vendor_id = "10de"
product_id = "2330"
"""
NATIVE_YAML = """
groups:
  - name: gpu
    numa_policy: required
    match: [{vendor_id: "10de", product_id: "2330"}]
"""
NOVA_LIST = (
    '[{"name": "gpu", "vendor_id": "10de", "product_id": "2330", "numa_policy": "required"}]'
)
NOVA_ONE = '{"name": "gpu", "vendor_id": "10de", "product_id": "2330", "numa_policy": "required"}'


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("groups.toml", NATIVE_TOML),
        ("groups.yaml", NATIVE_YAML),
        ("groups.yml", NATIVE_YAML),
        ("alias.json", NOVA_LIST),
        ("alias.json", NOVA_ONE),
    ],
)
def test_read_groups_file_in_every_format(tmp_path: Path, filename: str, text: str) -> None:
    path = tmp_path / filename
    path.write_text(text)
    (gpu,) = read_groups_file(path)
    assert (gpu.name, gpu.numa_policy, gpu.match[0].product_id) == (
        "gpu",
        NumaPolicy.REQUIRED,
        "2330",
    )


@pytest.mark.parametrize(
    ("filename", "text", "fmt", "message"),
    [
        ("groups.ini", "", None, "unknown format"),
        ("alias.json", '{"name": "gpu", "vendor_id": "10de"}', None, "does not have vendor_id"),
        ("alias.json", '{"name": "gpu", "numa_policy": "often"}', None, "often"),
        ("groups.toml", "groups = [", None, "cannot parse toml"),
        ("groups.txt", NATIVE_YAML, "yaml", None),
    ],
)
def test_read_groups_file_errors_name_the_problem(
    tmp_path: Path, filename: str, text: str, fmt: str | None, message: str | None
) -> None:
    path = tmp_path / filename
    path.write_text(text)
    if message is None:
        assert read_groups_file(path, fmt)[0].name == "gpu"
        return
    with pytest.raises(InvalidGroup, match=message):
        read_groups_file(path, fmt)


def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidGroup, match=r"missing\.toml"):
        read_groups_file(tmp_path / "missing.toml")


def test_quota_groups_see_own_writes_at_once_and_other_processes_after_the_ttl(
    sessions: sessionmaker[Session],
) -> None:
    svc = GroupService(sessions, cache_ttl_s=3600)
    other = GroupService(sessions)  # stands for another controller process
    svc.create(ADMIN, group("gpu"))
    assert svc.quota_groups("alice") == frozenset()
    other.set_quota(ADMIN, "gpu", "alice", 2)
    assert svc.quota_groups("alice") == frozenset()  # cached "no quota" until the TTL ends
    assert GroupService(sessions, cache_ttl_s=0).quota_groups("alice") == {"gpu"}
    svc.set_quota(ADMIN, "gpu", "bob", 1)  # any quota write of this process clears its cache
    assert svc.quota_groups("alice") == {"gpu"}
    assert svc.quota_groups("bob") == {"gpu"}
    svc.set_quota(ADMIN, "gpu", "alice", None)
    assert svc.quota_groups("alice") == frozenset()
