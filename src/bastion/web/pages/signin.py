"""Sign-in, first sign-in with an API key (sets a password), and sign-out."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Query, Request
from sqlalchemy import update
from starlette.responses import Response

from bastion.api.deps import client_ip
from bastion.api.routes.sso import sso_login_path
from bastion.audit import AuditRecord
from bastion.auth.passwords import hash_password
from bastion.errors import BastionError, Forbidden, Invalid
from bastion.store.base import utcnow
from bastion.store.tables import AuthSession, User
from bastion.web import session as web
from bastion.web.pages.base import Ctx, SelfWriter, form_fields, page_router, redirect, safe_next, threaded
from bastion.web.render import page

router = page_router()
MIN_PASSWORD = 12


def _login_page(
    request: Request, next_path: str, *, error: str = "", reason: str = "", status: int = 200, tab: str = ""
) -> Response:
    token = web.login_csrf(request)
    response = page(
        request,
        "login.html",
        status,
        next=safe_next(next_path),
        login_csrf=token,
        error=error,
        reason=reason,
        tab=tab,
        sso=request.app.state.ctx.services.sso is not None,
    )
    web.set_cookie(request, response, web.LOGIN_CSRF_COOKIE, token)
    return response


@router.get("/login")
def login_form(
    request: Request,
    ctx: Ctx,
    next: Annotated[str, Query(max_length=2000)] = "/",
    reason: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    try:
        request.state.web_session = web.load(request, ctx)
        return redirect(safe_next(next))
    except web.LoginRequired:
        pass
    return _login_page(request, next, reason=reason)


@router.post("/login")
async def login_submit(request: Request, ctx: Ctx) -> Response:
    form = await form_fields(request)
    web.check_login_csrf(request, form.get("login_csrf"))
    username, password = form.get("username", "")[:64], form.get("password", "")[:1024]
    try:
        if not username or not password:
            raise Invalid("enter your username and password")
        await threaded(web.sign_in, request, ctx, username, password)
    except BastionError as exc:
        return _login_page(request, form.get("next", "/"), error=exc.message, status=exc.status_code)
    return redirect(safe_next(form.get("next")))


@router.get("/login/sso")
def sso_start(next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """ "Sign in with SSO": to the provider through the API's start route, coming back to
    ``/login/sso/done``, which carries the one-time code in its fragment."""
    done = "/login/sso/done?next=" + quote(safe_next(next), safe="")
    return redirect(sso_login_path(done))


@router.get("/login/sso/done")
def sso_done(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """The page the provider's round trip ends on: app.js posts the fragment's code to ``/login/sso``
    (a fragment never reaches a server or a Referer, so the code must travel in a POST body)."""
    token = web.login_csrf(request)
    response = page(request, "login_sso.html", 200, next=safe_next(next), login_csrf=token)
    web.set_cookie(request, response, web.LOGIN_CSRF_COOKIE, token)
    return response


@router.post("/login/sso")
async def sso_finish(request: Request, ctx: Ctx) -> Response:
    form = await form_fields(request)
    web.check_login_csrf(request, form.get("login_csrf"))
    code = form.get("code", "").strip()[:200]
    try:
        if not code:
            raise Invalid("the single sign-on did not return a code: try again", code="sso_code_invalid")
        await threaded(web.sign_in_sso, request, ctx, code)
    except BastionError as exc:
        return _login_page(request, form.get("next", "/"), error=exc.message, status=exc.status_code)
    return redirect(safe_next(form.get("next")))


@router.post("/login/key")
async def first_sign_in(request: Request, ctx: Ctx) -> Response:
    """An account without a password (the bootstrap ones) proves itself once with its API key and
    chooses a password; the key itself never reaches the browser's storage."""
    form = await form_fields(request)
    web.check_login_csrf(request, form.get("login_csrf"))
    key, password = form.get("api_key", "").strip()[:200], form.get("password", "")[:1024]
    try:
        if password != form.get("confirm", ""):
            raise Invalid("the two passwords differ")
        if len(password) < MIN_PASSWORD:
            raise Invalid(f"choose a password of at least {MIN_PASSWORD} characters")
        await threaded(_set_first_password, request, ctx, key, password)
    except BastionError as exc:
        return _login_page(request, "/", error=exc.message, status=exc.status_code, tab="key")
    return redirect("/")


def _set_first_password(request: Request, ctx: Ctx, key: str, password: str) -> None:
    ip = client_ip(request)
    ctx.limiter.hit(ctx.settings.login_rate_limit, "login", ip or "unknown")
    if not key.startswith("bst_"):
        raise Invalid("paste an API key (it starts with bst_)", code="invalid_api_key")
    principal = ctx.auth.authenticate(key, ip)  # lockout and failure counting apply
    # Not Accounts.update_user: a caller changing their own password proves it with current_password,
    # and this account has none; its API key is its one credential, just checked above. Only an account
    # without a password takes this path, and the conditional UPDATE makes "has none" and "set it" one
    # step, so two racing first sign-ins cannot both set one.
    hashed = hash_password(password)
    with ctx.db.session() as s:
        set_now = s.execute(
            update(User)
            .where(User.id == principal.user_id, User.password_hash.is_(None))
            .values(password_hash=hashed)
        )
        if not getattr(set_now, "rowcount", 0):
            raise Forbidden(
                "this account already has a password: sign in with it (an admin can reset it)",
                code="password_already_set",
            )
        ended = s.execute(
            update(AuthSession)
            .where(AuthSession.user_id == principal.user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        ctx.audit.append(
            AuditRecord(
                "user.update",
                actor_id=principal.user_id,
                actor=principal.username,
                target_type="user",
                target_id=principal.user_id,
                source_ip=ip,
                details={
                    "password": "set",
                    "proof": "api_key",
                    "sessions_ended": int(getattr(ended, "rowcount", 0) or 0),
                },
            ),
            s,
        )
    web.sign_in(request, ctx, principal.username, password)


@router.post("/logout")
async def logout(request: Request, ctx: Ctx, session: SelfWriter) -> Response:
    await threaded(web.sign_out, request, ctx, session)
    return redirect("/login?reason=" + "You+are+signed+out.")
