"""Bearer-token authentication: ``Authorization: Bearer <token>`` on every route but health.

Tokens are checked by :class:`pcifleet.control.services.tokens.TokenService` (stored hashed);
the role and scope rules are :class:`pcifleet.control.services.principal.Principal`'s. This
module only turns the header into a principal:

- no or malformed header, unknown or revoked token: 401 ``pcifleet.unauthorized`` with
  ``WWW-Authenticate: Bearer``;
- role violations are raised later, by the services, as 403 ``pcifleet.forbidden``.

The single-user mode (``AuthMode.SINGLE_USER``) exists for the local demo only: every request
is the local admin, and both the server log and ``/v1/health`` say so.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from pcifleet.control.container import Services
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal
from pcifleet.domain.errors import Unauthorized

log = logging.getLogger(__name__)

SINGLE_USER_WARNING = (
    "authentication is disabled (single-user mode): every request acts as admin; "
    "use it only for a local demo"
)


class AuthMode(enum.StrEnum):
    TOKENS = "tokens"
    SINGLE_USER = "single-user"


@dataclass(frozen=True, slots=True)
class AppState:
    """What every request handler may use; set once by ``create_app``."""

    services: Services
    auth_mode: AuthMode

    @property
    def warnings(self) -> tuple[str, ...]:
        return (SINGLE_USER_WARNING,) if self.auth_mode is AuthMode.SINGLE_USER else ()


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The caller and the services, handed to every authenticated handler."""

    who: Principal
    services: Services


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token from `pcifleet token create` (admin, member or agent).",
)


def attach_state(app: FastAPI, state: AppState) -> None:
    app.state.pcifleet = state
    if state.auth_mode is AuthMode.SINGLE_USER:
        log.warning(SINGLE_USER_WARNING)


def app_state(request: Request) -> AppState:
    state = request.app.state.pcifleet
    assert isinstance(state, AppState)
    return state


async def _authenticate(
    state: AppState, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if state.auth_mode is AuthMode.SINGLE_USER:
        return LOCAL_ADMIN
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    tokens = state.services.tokens
    secret = credentials.credentials
    known = tokens.known(secret)
    if known is not None:
        return known
    return await run_in_threadpool(tokens.authenticate, secret)  # reads the token row


async def request_context(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> RequestContext:
    """The caller, on the event loop: a token checked lately costs no thread hop (a sync
    dependency would cross into the thread pool and back for every request)."""
    state = app_state(request)
    return RequestContext(await _authenticate(state, credentials), state.services)


#: the parameter type of every authenticated handler: ``def handler(ctx: Ctx, ...)``
Ctx = Annotated[RequestContext, Depends(request_context)]
