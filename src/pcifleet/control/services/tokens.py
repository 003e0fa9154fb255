"""API tokens: create them (shown once), store only their digest, and authenticate requests.

A token is 32 random bytes, URL-safe base64 encoded; the database keeps its SHA-256 hex
digest, so a leaked database does not leak usable tokens. Authentication hashes the presented
token and looks the digest up. Successful lookups are cached for a few seconds per process
(every API request authenticates; the cache keeps that off the database's hot path), so a
revocation takes at most that long to reach every controller process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import TokenRow
from pcifleet.control.services.principal import Principal, Role
from pcifleet.domain.errors import InvalidInput, NotFound, Unauthorized

_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a token after its creation (never the secret)."""

    id: str
    name: str
    role: Role
    project: str | None
    host: str | None
    created_at: dt.datetime
    revoked: bool


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        row.id, row.name, Role(row.role), row.project, row.host_name, row.created_at, row.revoked
    )


def _check_scope(role: Role, project: str | None, host: str | None) -> None:
    """A member needs a project and no host; an agent a host and no project; an admin neither."""
    wants = {Role.ADMIN: (False, False), Role.MEMBER: (True, False), Role.AGENT: (False, True)}
    need_project, need_host = wants[role]
    if bool(project) != need_project:
        rule = "required for a member token" if need_project else f"not allowed for {role}"
        raise InvalidInput(f"project: {rule}", field="project", rule=rule)
    if bool(host) != need_host:
        rule = "required for an agent token" if need_host else f"not allowed for {role}"
        raise InvalidInput(f"host: {rule}", field="host", rule=rule)


class TokenService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal]] = {}

    def create(
        self, role: Role, *, project: str | None = None, host: str | None = None, name: str = ""
    ) -> tuple[TokenInfo, str]:
        """Store a new token; return its description and the secret (shown this once)."""
        _check_scope(role, project, host)
        secret = secrets.token_urlsafe(32)
        row = TokenRow(
            id=str(uuid.uuid4()),
            name=name or f"{role}-{project or host or 'token'}",
            token_hash=digest(secret),
            role=str(role),
            project=project,
            host_name=host,
        )
        with self._sessions.begin() as session:
            session.add(row)
        return _info(row), secret

    def known(self, secret: str) -> Principal | None:
        """The principal of ``secret`` if this process checked it lately, else None: no
        database read (the API asks this first, on its event loop)."""
        return self._cached(digest(secret))

    def _cached(self, key: str) -> Principal | None:
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        return None

    def authenticate(self, secret: str) -> Principal:
        """The principal of ``secret``; Unauthorized when unknown or revoked."""
        key = digest(secret)
        known = self._cached(key)
        if known is not None:
            return known
        now = self._clock()
        with self._sessions() as session:
            row = session.scalars(select(TokenRow).where(TokenRow.token_hash == key)).first()
            if row is None or row.revoked:
                raise Unauthorized("the bearer token is unknown or revoked")
            principal = Principal(Role(row.role), row.project, row.host_name, row.name)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = (now + self._cache_seconds, principal)
        return principal

    def list(self) -> list[TokenInfo]:
        with self._sessions() as session:
            rows = session.scalars(select(TokenRow).order_by(TokenRow.created_at, TokenRow.id))
            return [_info(row) for row in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        with self._sessions.begin() as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"token {token_id} not found")
            row.revoked = True
            self._cache.clear()
            return _info(row)
