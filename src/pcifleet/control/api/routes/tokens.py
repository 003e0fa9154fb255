"""``/v1/tokens``: admins create, list and revoke API tokens."""

from __future__ import annotations

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.schemas.tokens import TokenCreate, TokenCreated, TokenList, TokenOut
from pcifleet.control.services.tokens import TokenInfo


def _out(info: TokenInfo) -> TokenOut:
    return TokenOut(
        id=info.id,
        name=info.name,
        role=info.role,
        project=info.project,
        host=info.host,
        created_at=info.created_at,
        revoked=info.revoked,
    )


def create(ctx: Ctx, body: TokenCreate) -> TokenCreated:
    """Create a token; the secret is in this response only (403 unless admin)."""
    ctx.who.require_admin("creating a token")
    info, secret = ctx.services.tokens.create(
        body.role, project=body.project, host=body.host, name=body.name or ""
    )
    return TokenCreated(**_out(info).model_dump(), token=secret)


def list_tokens(ctx: Ctx) -> TokenList:
    """Every token (never the secrets)."""
    ctx.who.require_admin("listing tokens")
    return TokenList(tokens=[_out(info) for info in ctx.services.tokens.list()])


def revoke(ctx: Ctx, token_id: str) -> TokenOut:
    """Revoke a token: requests with it fail with 401 within a few seconds."""
    ctx.who.require_admin("revoking a token")
    return _out(ctx.services.tokens.revoke(token_id))
