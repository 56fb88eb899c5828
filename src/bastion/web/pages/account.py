"""Account: the caller's own API keys (a new key shown once) and own login sessions."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import select
from starlette.responses import Response

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.store.base import utcnow
from bastion.store.tables import AuthSession
from bastion.web.pages.base import Ctx, SelfWriter, Session, form_fields, page_router, redirect, threaded
from bastion.web.render import page

router = page_router(prefix="/account")
SESSIONS_SHOWN = 20


def own_sessions(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    """The caller's live login sessions, newest first."""
    now = utcnow()
    with ctx.db.session() as s:
        rows = s.scalars(
            select(AuthSession)
            .where(
                AuthSession.user_id == principal.user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.created_at.desc())
            .limit(SESSIONS_SHOWN)
        ).all()
        return [
            {
                "id": r.id,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "current": r.id == principal.session_id,
            }
            for r in rows
        ]


def _account_page(
    request: Request, ctx: Context, principal: Principal, new_key: dict[str, Any] | None
) -> Response:
    keys = ctx.accounts.list_keys(principal.user_id)
    return page(
        request, "account.html", keys=keys[::-1], sessions=own_sessions(ctx, principal), new_key=new_key
    )


@router.get("")
def account(request: Request, ctx: Ctx, session: Session) -> Response:
    return _account_page(request, ctx, session.principal, None)


@router.post("/keys")
async def create_key(request: Request, ctx: Ctx, session: SelfWriter) -> Response:
    """The new key is in this response only: shown once, never stored by the browser."""
    form = await form_fields(request)
    name = (form.get("name") or "default").strip()[:100] or "default"
    days = form.get("expires_in_days") or ""
    expires = float(days) if days.replace(".", "", 1).isdigit() and 0 < float(days) <= 3650 else None
    new = await threaded(
        ctx.accounts.create_key,
        session.principal.user_id,
        name,
        expires_in_days=expires,
        actor=session.principal,
    )
    response = await threaded(
        _account_page, request, ctx, session.principal, {"name": name, "key": new.plaintext}
    )
    response.status_code = 201
    return response


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, ctx: Ctx, session: SelfWriter, key_id: str) -> Response:
    await threaded(
        ctx.accounts.revoke_key, key_id, owner_id=session.principal.user_id, actor=session.principal
    )
    return redirect("/account")


@router.post("/sessions/{session_id}/revoke")
async def revoke_session(request: Request, ctx: Ctx, session: SelfWriter, session_id: str) -> Response:
    """Through ``AuthService.revoke_session``: only the caller's own sessions; audited."""
    from bastion.api.deps import client_ip

    await threaded(ctx.auth.revoke_session, session.principal, session_id[:64], client_ip(request))
    return redirect("/account")
