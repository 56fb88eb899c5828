"""The dashboard's cookie session: a login session of ``AuthService`` carried in two HttpOnly cookies.

A sign-in opens an ordinary login session (``AuthService.login``: lockout, rate limit and audit
apply) and puts its access token and refresh token into ``HttpOnly; SameSite=Strict`` cookies
(``Secure`` under TLS); nothing readable by script ever holds a credential. On each request, in order:

1. the access token is verified locally (an expired one is not an attack: it goes to step 4);
2. a token issued longer ago than ``BASTION_WEB_IDLE_MINUTES`` means the session sat idle: it is
   ended (revoked, like a logout) and the person signs in again;
3. ``AuthService.authenticate`` turns the token into a Principal (revoked session, disabled user:
   refused there, as for the API);
4. a page navigation with a token older than ``ROTATE_AFTER`` rotates the pair through
   ``AuthService.refresh``, so activity keeps the session alive and every rotation is the API's.
   Only navigations rotate: a page's background requests (htmx, SSE) never race each other into
   the refresh-token reuse detector.

CSRF: every state-changing request carries a token bound to the login session (an HMAC of its id
under a key derived from the JWT secret) in a form field or the ``X-CSRF-Token`` header, and a
cross-site ``Origin`` / ``Sec-Fetch-Site`` is refused before the token is even looked at.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from starlette.responses import Response

from bastion.api.deps import client_ip
from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.errors import BastionError, Forbidden, Unauthorized
from bastion.store.base import utcnow

ACCESS_COOKIE = "bastion_session"
REFRESH_COOKIE = "bastion_refresh"
LOGIN_CSRF_COOKIE = "bastion_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
ROTATE_AFTER = timedelta(minutes=5)
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class LoginRequired(Exception):
    """No usable session: the page answers with a redirect to the sign-in form."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    csrf: str


def _csrf_key(ctx: Context) -> bytes:
    return hashlib.sha256(b"bastion-web-csrf\x00" + ctx.settings.secret_bytes("jwt_secret")).digest()


def csrf_token(ctx: Context, session_id: str) -> str:
    return hmac.new(_csrf_key(ctx), session_id.encode(), hashlib.sha256).hexdigest()


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=secure_cookies(request), path="/"
    )


def _queue_cookies(request: Request, access: str, refresh: str) -> None:
    """Cookies the page's response must set (the route class applies them; see ``pages.WebRoute``)."""
    request.state.web_cookies = [(ACCESS_COOKIE, access), (REFRESH_COOKIE, refresh)]


def clear_cookies(response: Response) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path="/", httponly=True, samesite="strict")


def apply_cookies(request: Request, response: Response) -> None:
    for name, value in getattr(request.state, "web_cookies", ()):
        set_cookie(request, response, name, value)
    if getattr(request.state, "web_clear", False):
        clear_cookies(response)


def _is_navigation(request: Request) -> bool:
    return (
        request.method == "GET"
        and "hx-request" not in request.headers
        and request.headers.get("sec-fetch-dest", "document") == "document"
    )


def load(request: Request, ctx: Context) -> WebSession:
    """The signed-in person behind this request, or LoginRequired (see the module docstring)."""
    access = request.cookies.get(ACCESS_COOKIE)
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not access:
        raise LoginRequired()
    tokens, ip = ctx.auth.tokens, client_ip(request)
    idle = timedelta(minutes=ctx.settings.web_idle_minutes)
    now = utcnow()
    try:
        claims = tokens.verify(access, "access")
    except Unauthorized as exc:
        if exc.code != "token_expired":
            request.state.web_clear = True
            _count_failure(ctx, access, ip)
            raise LoginRequired() from None
        return _rotate(request, ctx, refresh, idle)
    issued = claims.expires_at - tokens.access_ttl
    try:
        principal = ctx.auth.authenticate(access, ip)
    except BastionError:
        request.state.web_clear = True
        raise LoginRequired("Your session has ended. Please sign in again.") from None
    request.state.principal = principal
    if now - issued > idle:
        ctx.auth.logout(principal, refresh, ip)
        request.state.web_clear = True
        raise LoginRequired("You were signed out after a period of inactivity.")
    if now - issued > ROTATE_AFTER and _is_navigation(request):
        return _rotate(request, ctx, refresh, idle)
    return WebSession(principal, csrf_token(ctx, claims.session_id))


def _rotate(request: Request, ctx: Context, refresh: str | None, idle: timedelta) -> WebSession:
    if not refresh:
        request.state.web_clear = True
        raise LoginRequired("Your session has expired. Please sign in again.")
    ip = client_ip(request)
    try:
        claims = ctx.auth.tokens.verify(refresh, "refresh")
        if utcnow() - (claims.expires_at - ctx.auth.tokens.refresh_ttl) > idle:
            raise LoginRequired("You were signed out after a period of inactivity.")
        pair = ctx.auth.refresh(refresh, ip)
        principal = ctx.auth.authenticate(pair.access_token, ip)
    except (BastionError, LoginRequired):
        request.state.web_clear = True
        raise LoginRequired("Your session has expired. Please sign in again.") from None
    request.state.principal = principal
    _queue_cookies(request, pair.access_token, pair.refresh_token)
    assert principal.session_id is not None
    return WebSession(principal, csrf_token(ctx, principal.session_id))


def _count_failure(ctx: Context, token: str, ip: str | None) -> None:
    """A forged or foreign cookie counts against its source, as a bad API credential does."""
    with contextlib.suppress(BastionError):
        ctx.auth.authenticate(token, ip)


def sign_in(request: Request, ctx: Context, username: str, password: str) -> None:
    """Open a login session (rate-limited per address like ``POST /auth/login``) and set its cookies."""
    ip = client_ip(request)
    ctx.limiter.hit(ctx.settings.login_rate_limit, "login", ip or "unknown")
    pair = ctx.auth.login(username, password, ip)
    _queue_cookies(request, pair.access_token, pair.refresh_token)


def sign_in_sso(request: Request, ctx: Context, code: str) -> None:
    """Redeem the one-time code the SSO callback handed to the browser (in the URL fragment) for a
    login session, rate-limited like a password sign-in, and set its cookies."""
    from bastion.api.deps import configured_sso

    ip = client_ip(request)
    ctx.limiter.hit(ctx.settings.login_rate_limit, "login", ip or "unknown")
    pair = configured_sso(ctx.services).redeem(code, ip)
    _queue_cookies(request, pair.access_token, pair.refresh_token)


def sign_out(request: Request, ctx: Context, session: WebSession) -> None:
    ctx.auth.logout(session.principal, request.cookies.get(REFRESH_COOKIE), client_ip(request))
    request.state.web_clear = True


# -- CSRF -----------------------------------------------------------------------------------------
def check_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser says came from another site."""
    if request.method in _SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("cross-site request refused", code="csrf_origin")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden("cross-origin request refused", code="csrf_origin")


def check_csrf(request: Request, session: WebSession, submitted: str | None) -> None:
    check_origin(request)
    token = request.headers.get(CSRF_HEADER) or submitted or ""
    if not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again", code="csrf_token")


def login_csrf(request: Request) -> str:
    """The pre-session token of the sign-in forms (a cookie and the same value in the form)."""
    existing = request.cookies.get(LOGIN_CSRF_COOKIE)
    return existing if existing and len(existing) == 43 else secrets.token_urlsafe(32)


def check_login_csrf(request: Request, submitted: str | None) -> None:
    check_origin(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not cookie or not hmac.compare_digest(cookie.encode(), (submitted or "").encode()):
        raise Forbidden("the sign-in form expired; reload the page and try again", code="csrf_token")
