"""``/v1/health``: liveness and readiness in one (no authentication)."""

from __future__ import annotations

from fastapi import Request

from pcifleet import __version__
from pcifleet.control.api.auth import app_state
from pcifleet.control.api.schemas.health import Health


def show(request: Request) -> Health:
    """The service is up and its database answers (503 ``pcifleet.unavailable`` otherwise)."""
    state = app_state(request)
    state.services.ping()
    return Health(
        status="ok",
        version=__version__,
        auth_mode=state.auth_mode.value,
        database="ok",
        warnings=list(state.warnings),
    )
