"""API tokens: shown once, stored as digests, scoped by role, revocable; on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import TokenRow
from pcifleet.control.services.principal import Principal, Role
from pcifleet.control.services.tokens import TokenService, digest
from pcifleet.domain.errors import Forbidden, InvalidInput, NotFound, Unauthorized


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("role", "scope", "principal"),
    [
        (Role.ADMIN, {}, Principal(Role.ADMIN, name="ops")),
        (Role.MEMBER, {"project": "p1"}, Principal(Role.MEMBER, project="p1", name="ops")),
        (Role.AGENT, {"host": "h1"}, Principal(Role.AGENT, host="h1", name="ops")),
    ],
)
def test_a_token_authenticates_as_its_principal(
    sessions: sessionmaker[Session], role: Role, scope: dict[str, str], principal: Principal
) -> None:
    service = TokenService(sessions)
    info, secret = service.create(role, name="ops", **scope)
    assert service.authenticate(secret) == principal
    with sessions() as session:
        stored = session.scalars(select(TokenRow.token_hash)).all()
    assert stored == [digest(secret)] and secret not in stored
    assert [t.id for t in service.list()] == [info.id]


@pytest.mark.parametrize(
    ("role", "scope", "field"),
    [
        (Role.MEMBER, {}, "project"),
        (Role.AGENT, {}, "host"),
        (Role.ADMIN, {"project": "p"}, "project"),
        (Role.MEMBER, {"project": "p", "host": "h"}, "host"),
        (Role.AGENT, {"host": "h", "project": "p"}, "project"),
    ],
)
def test_scope_must_fit_the_role(
    sessions: sessionmaker[Session], role: Role, scope: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        TokenService(sessions).create(role, **scope)
    assert caught.value.fields["field"] == field


def test_unknown_and_revoked_tokens_are_unauthorized(sessions: sessionmaker[Session]) -> None:
    service = TokenService(sessions)
    info, secret = service.create(Role.ADMIN)
    with pytest.raises(Unauthorized):
        service.authenticate("nope")
    service.authenticate(secret)
    assert service.revoke(info.id).revoked
    with pytest.raises(Unauthorized):
        service.authenticate(secret)
    with pytest.raises(NotFound):
        service.revoke("missing")


def test_other_processes_see_a_revocation_once_their_cache_expires(
    sessions: sessionmaker[Session],
) -> None:
    clock = Clock()
    here, elsewhere = TokenService(sessions), TokenService(sessions, cache_seconds=5, clock=clock)
    info, secret = here.create(Role.ADMIN)
    elsewhere.authenticate(secret)
    here.revoke(info.id)
    assert elsewhere.authenticate(secret).role is Role.ADMIN
    clock.now = 5.1
    with pytest.raises(Unauthorized):
        elsewhere.authenticate(secret)


def test_known_answers_from_what_this_process_checked_lately(
    sessions: sessionmaker[Session],
) -> None:
    # the API asks known() on its event loop: it never reads the database
    clock = Clock()
    service = TokenService(sessions, cache_seconds=5, clock=clock)
    info, secret = service.create(Role.MEMBER, project="p")
    assert service.known(secret) is None  # never checked here
    principal = service.authenticate(secret)
    assert service.known(secret) == principal
    assert service.known("nope") is None
    clock.now = 5.1
    assert service.known(secret) is None  # expired: the next request reads the row again
    service.authenticate(secret)
    service.revoke(info.id)
    assert service.known(secret) is None


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        (Principal(Role.ADMIN), {"admin", "host h1", "host h2", "project p", "project q"}),
        (Principal(Role.MEMBER, project="p"), {"user", "project p"}),
        (Principal(Role.AGENT, host="h1"), {"host h1"}),
    ],
)
def test_principal_rules(who: Principal, allowed: set[str]) -> None:
    checks = {
        "admin": lambda: who.require_admin("x"),
        "user": lambda: who.require_user("x"),
        "host h1": lambda: who.require_host("h1", "x"),
        "host h2": lambda: who.require_host("h2", "x"),
        "project p": lambda: who.require_project("p", "x"),
        "project q": lambda: who.require_project("q", "x"),
    }
    passed = set()
    for name, check in checks.items():
        try:
            check()
            passed.add(name)
        except Forbidden:
            pass
    assert passed == allowed | ({"user"} if who.is_admin else set())
    assert who.can_see_project(None)
    assert who.can_see_project("p") is (who.is_admin or who.project == "p")
