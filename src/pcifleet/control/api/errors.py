"""Every failure becomes one JSON shape: ``{"errors": [{status, code, title, detail, meta}]}``.

- a :class:`~pcifleet.domain.errors.PcifleetError` keeps its own status and stable code;
- a request that does not fit its schema is a 400 ``pcifleet.invalid_input`` naming the field
  (``loc``) and the rule (``msg``): input errors are 400 whichever layer finds them;
- an unreachable database is a 503 ``pcifleet.unavailable`` with ``Retry-After``, so clients and
  load balancers retry instead of reporting a bug;
- anything else is a 500 ``pcifleet.internal`` whose body says nothing about the code (the
  traceback goes to the server log only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pcifleet.control.api.schemas.common import ErrorDocument, ErrorItem
from pcifleet.domain.errors import PcifleetError

log = logging.getLogger(__name__)

INVALID_INPUT = "pcifleet.invalid_input"
INTERNAL = "pcifleet.internal"
UNAVAILABLE = "pcifleet.unavailable"
#: HTTP statuses that the framework raises itself (unknown path, wrong method)
_HTTP_CODES = {404: "pcifleet.not_found", 405: "pcifleet.method_not_allowed"}

#: the database driver failures that mean "the database is not there right now"
DATABASE_DOWN: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
)
_META_TYPES = (str, int, float, bool, type(None))


def error_response(
    items: Sequence[ErrorItem], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one place that renders the error document (status of the first error)."""
    body = ErrorDocument(errors=list(items)).model_dump(mode="json")
    return JSONResponse(body, status_code=items[0].status, headers=dict(headers or {}))


def item(status: int, code: str, title: str, detail: str, **meta: Any) -> ErrorItem:
    safe = {k: v for k, v in meta.items() if isinstance(v, _META_TYPES)}
    return ErrorItem(status=status, code=code, title=title, detail=detail, meta=safe)


def pcifleet_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PcifleetError)
    meta = {k: v for k, v in exc.fields.items() if k != "detail"}
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(
        [item(exc.status, exc.code, exc.title, exc.message, **meta)], headers=headers
    )


def _loc(loc: Iterable[Any]) -> str:
    """``("body", "specs", 0, "vendor_id")`` -> ``specs[0].vendor_id`` (the field a user wrote)."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = []
    for err in exc.errors():
        rule = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            field, rule = "body", f"{rule} at position {_loc(err.get('loc', ()))}"
        else:
            field = _loc(err.get("loc", ()))
        detail = f"{field}: {rule}"
        items.append(item(400, INVALID_INPUT, "Invalid input", detail, field=field, rule=rule))
    if not items:
        items.append(item(400, INVALID_INPUT, "Invalid input", "the request is malformed"))
    return error_response(items)


def http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"pcifleet.http_{exc.status_code}")
    title = code.rsplit(".", 1)[-1].replace("_", " ").capitalize()
    return error_response(
        [item(exc.status_code, code, title, str(exc.detail))], headers=exc.headers
    )


def database_down(_: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", type(exc).__name__)
    detail = "the database is unreachable; retry later"
    return error_response(
        [item(503, UNAVAILABLE, "Unavailable", detail)], headers={"Retry-After": "1"}
    )


class CatchAll:
    """ASGI middleware: an unexpected exception becomes a 500 ``pcifleet.internal``.

    Starlette's own ``Exception`` handler re-raises after answering (so every test client and
    server sees a crash); this one answers, logs the traceback once, and stops there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started or scope["type"] != "http":
                raise
            detail = "an unexpected error occurred; it has been logged on the server"
            await error_response([item(500, INTERNAL, "Internal", detail)])(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` (most specific first; the MRO picks the handler)."""
    app.add_exception_handler(PcifleetError, pcifleet_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    for exc_type in DATABASE_DOWN:
        app.add_exception_handler(exc_type, database_down)
    app.add_middleware(CatchAll)
