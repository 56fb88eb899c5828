"""Admin: users (create, role, disable, a key for someone), the audit log (filters, paging, the
chain's verification state), the price table and the workers. Admin role checked as by the API."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from bastion.api.deps import JobsDep
from bastion.audit.query import AuditFilter, audit_page
from bastion.clock import aware_utcnow
from bastion.context import Context
from bastion.errors import BastionError, Invalid
from bastion.web.pages.base import AdminReader, AdminWriter, Ctx, form_fields, page_router, redirect, threaded
from bastion.web.render import page

router = page_router(prefix="/admin")
AUDIT_PAGE = 50
_verify_lock = threading.Lock()


def _users_page(request: Request, ctx: Context, **extra: Any) -> Response:
    users = ctx.accounts.list_users()
    return page(request, "admin_users.html", users=users, error="", **extra)


@router.get("/users")
def users(request: Request, ctx: Ctx, session: AdminReader) -> Response:
    return _users_page(request, ctx)


@router.post("/users")
async def create_user(request: Request, ctx: Ctx, session: AdminWriter) -> Response:
    from bastion.contract.accounts import UserCreate

    form = await form_fields(request)
    try:
        body = UserCreate(
            username=form.get("username", "").strip(),
            role=form.get("role", "user"),
            password=form.get("password") or None,
            email=form.get("email") or None,
        )
        await threaded(
            ctx.accounts.create_user,
            body.username,
            body.role,
            password=body.password,
            email=body.email,
            actor=session.principal,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
        return await threaded(_users_page, request, ctx, error=msg)
    except BastionError as exc:
        return await threaded(_users_page, request, ctx, error=exc.message)
    return redirect("/admin/users")


@router.post("/users/{user_id}")
async def update_user(request: Request, ctx: Ctx, session: AdminWriter, user_id: str) -> Response:
    form = await form_fields(request)
    role = form.get("role") or None
    if role is not None and role not in ("admin", "user", "viewer"):
        raise Invalid("unknown role")
    disabled = {"true": True, "false": False}.get(form.get("disabled", ""))
    await threaded(ctx.accounts.update_user, user_id, role=role, disabled=disabled, actor=session.principal)
    return redirect("/admin/users")


def _keys_page(
    request: Request, ctx: Context, user_id: str, new_key: dict[str, Any] | None = None
) -> Response:
    with ctx.db.session() as s:
        user = ctx.accounts.get_user(s, user_id)
        owner = {"id": user.id, "username": user.username, "role": user.role}
    keys = ctx.accounts.list_keys(owner["id"])[::-1]
    if new_key is not None:
        new_key["owner"] = owner["username"]
    return page(request, "admin_keys.html", owner=owner, keys=keys, new_key=new_key)


@router.get("/users/{user_id}/keys")
def user_keys(request: Request, ctx: Ctx, session: AdminReader, user_id: str) -> Response:
    return _keys_page(request, ctx, user_id)


@router.post("/users/{user_id}/keys")
async def create_user_key(request: Request, ctx: Ctx, session: AdminWriter, user_id: str) -> Response:
    """A key for someone else (as ``POST /admin/users/{id}/keys``): shown once, on this response."""
    form = await form_fields(request)
    name = (form.get("name") or "dashboard").strip()[:100] or "dashboard"
    new = await threaded(ctx.accounts.create_key, user_id, name, actor=session.principal)
    response = await threaded(_keys_page, request, ctx, user_id, {"key": new.plaintext, "name": name})
    response.status_code = 201
    return response


@router.post("/users/{user_id}/keys/{key_id}/revoke")
async def revoke_user_key(
    request: Request, ctx: Ctx, session: AdminWriter, user_id: str, key_id: str
) -> Response:
    """Revoke one of the user's keys (as ``bastion keys revoke``), scoped to that user."""
    await threaded(ctx.accounts.revoke_key, key_id, owner_id=user_id, actor=session.principal)
    return redirect(f"/admin/users/{user_id}/keys")


@router.get("/audit")
def audit(
    request: Request,
    ctx: Ctx,
    session: AdminReader,
    before: Annotated[int | None, Query(ge=1)] = None,
    action: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=64)] = "",
    outcome: Annotated[Literal["", "success", "denied", "failure"], Query()] = "",
    since: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    try:
        since_at = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise Invalid("since: use a date such as 2026-12-01 or 2026-12-01T08:00") from None
    where = AuditFilter(action or None, actor or None, outcome or None, since_at)
    rows = audit_page(ctx.db, AUDIT_PAGE, before, where)
    next_before = rows[-1]["seq"] if len(rows) == AUDIT_PAGE else None
    filters = {"action": action, "actor": actor, "outcome": outcome, "since": since}
    template = "partials/audit_rows.html" if "hx-request" in request.headers else "admin_audit.html"
    return page(
        request,
        template,
        rows=rows,
        next_before=next_before,
        filters=filters,
        before=before,
        verified=_last_verify(request),
    )


def _last_verify(request: Request) -> dict[str, Any] | None:
    """The last chain walk on this app (kept on its state, so it stays on the page until the next)."""
    result: dict[str, Any] | None = getattr(request.app.state, "audit_verify", None)
    return result


@router.post("/audit/verify")
async def audit_verify(request: Request, ctx: Ctx, session: AdminWriter) -> Response:
    """Walk the whole chain (as ``bastion audit verify`` does); the result stays on the page."""
    from bastion.audit.verify import verify_chain

    def run() -> dict[str, Any]:
        with _verify_lock:
            result = verify_chain(ctx.db)
        out = {
            "ok": result.ok,
            "checked": result.checked,
            "first_bad_seq": result.first_bad_seq,
            "reason": result.reason,
            "at": aware_utcnow().isoformat(timespec="seconds"),
        }
        request.app.state.audit_verify = out
        return out

    verified = await threaded(run)
    return page(request, "partials/audit_verify.html", verified=verified)


MAX_PROFILES = 50


def _prices_page(request: Request, ctx: Context, status_code: int = 200, error: str = "") -> Response:
    table = ctx.services.jobs.prices.all()
    return page(
        request, "admin_prices.html", status_code, prices=[p.public() for p in table.values()], error=error
    )


@router.get("/prices")
def prices(request: Request, ctx: Ctx, session: AdminReader) -> Response:
    return _prices_page(request, ctx)


def price_rows(form: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The edited table: one row per ``profile_N`` (rows marked ``remove_N`` or left blank dropped)."""
    table: dict[str, dict[str, Any]] = {}
    for i in range(MAX_PROFILES + 1):
        name = (form.get(f"profile_{i}") or "").strip()
        if not name or form.get(f"remove_{i}"):
            continue
        if name in table:
            raise Invalid(f"resource profile {name[:40]!r} appears twice", code="duplicate_profile")
        try:
            table[name] = {
                "hourly_cost": float(form.get(f"hourly_cost_{i}") or "nan"),
                "currency": (form.get(f"currency_{i}") or "USD").strip(),
                "speedup": float(form.get(f"speedup_{i}") or 1),
                "description": (form.get(f"description_{i}") or "").strip(),
            }
        except ValueError:
            raise Invalid(f"profile {name[:40]!r}: hourly cost and speed-up are numbers") from None
        if table[name]["hourly_cost"] != table[name]["hourly_cost"]:  # NaN: left empty
            raise Invalid(f"profile {name[:40]!r} needs an hourly cost", code="invalid_price")
    return table


@router.post("/prices")
async def update_prices(request: Request, ctx: Ctx, jobs: JobsDep, session: AdminWriter) -> Response:
    """Replaces the table through the same ``PriceTable.replace`` and audit action as
    ``PUT /admin/training/prices``."""
    from bastion.api.deps import client_ip
    from bastion.audit import AuditRecord

    form = await form_fields(request)
    admin = session.principal

    def run() -> None:
        table = jobs.prices.replace(price_rows(form), updated_by=admin.user_id)
        ctx.audit.append(
            AuditRecord(
                "training.prices.update",
                "success",
                admin.user_id,
                admin.username,
                "price_table",
                None,
                client_ip(request),
                {"profiles": sorted(table)},
            )
        )

    try:
        await threaded(run)
    except BastionError as exc:
        return await threaded(_prices_page, request, ctx, exc.status_code, exc.message)
    return redirect("/admin/prices")


@router.get("/workers")
def workers(request: Request, jobs: JobsDep, session: AdminReader) -> Response:
    return page(request, "admin_workers.html", status=jobs.admin_status())
