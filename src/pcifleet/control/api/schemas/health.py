"""``/v1/health``."""

from __future__ import annotations

from typing import Literal

from pcifleet.control.api.schemas.common import Out


class Health(Out):
    status: Literal["ok"]
    version: str
    #: "tokens", or "single-user" (no authentication: local demo only)
    auth_mode: str
    database: Literal["ok"]
    warnings: list[str]
