"""``/v1/tokens``: API tokens (the secret is returned once, at creation)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from pcifleet.control.api.schemas.common import Name, Out, Project, Strict
from pcifleet.control.services.principal import Role


class TokenCreate(Strict):
    role: Role
    #: required for a member token, refused otherwise
    project: Project | None = None
    #: required for an agent token, refused otherwise
    host: Name | None = None
    name: Annotated[str, Field(max_length=255)] | None = None


class TokenOut(Out):
    id: str
    name: str
    role: Role
    project: str | None
    host: str | None
    created_at: dt.datetime
    revoked: bool


class TokenCreated(TokenOut):
    #: the bearer token itself; it is not stored and cannot be shown again
    token: str


class TokenList(Out):
    tokens: list[TokenOut]
