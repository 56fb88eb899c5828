"""Single sign-on with OpenID Connect: start, callback, the browser's code and the CLI's poll.

The dashboard's "Sign in with SSO" is a plain link to ``sso_login_path(return_to)``
(``GET /api/v1/auth/sso/start?return_to=/somewhere``). After the provider, the callback sends the
browser to ``return_to#sso_code=...``; the page POSTs that code to ``/api/v1/auth/sso/exchange`` for
an ordinary token pair. The code is single use and lives 60 s; it rides in the fragment, which the
browser never sends to a server or in a Referer.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, CurrentPrincipal, client_ip, configured_sso
from bastion.api.openapi import errors
from bastion.api.routes.auth import tokens
from bastion.api.routing import PrefixRouter
from bastion.context import Context
from bastion.contract.accounts import TokenResponse

PREFIX = "/api/v1/auth/sso"
router = PrefixRouter(prefix=PREFIX, tags=["auth"])
DONE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Bastion</title>"
    "<p>Signed in. You can close this window and return to your terminal.</p>"
)


def sso_login_path(return_to: str = "/") -> str:
    """The link behind a "Sign in with SSO" button (for the dashboard)."""
    return f"{PREFIX}/start?return_to={quote(return_to, safe='/')}"


class SsoInfo(BaseModel):
    enabled: bool
    login_path: str | None = Field(description="link target for a 'Sign in with SSO' button")


class CliStart(BaseModel):
    authorization_url: str = Field(description="open this in a browser to sign in")
    poll_token: str = Field(description="secret: poll /api/v1/auth/sso/cli/poll with it")
    expires_in: int
    interval: int = 2


class CodeBody(BaseModel):
    code: str = Field(min_length=10, max_length=200)


class PollBody(BaseModel):
    poll_token: str = Field(min_length=10, max_length=200)


def _limit(ctx: Context, request: Request) -> None:
    ctx.limiter.hit(ctx.settings.login_rate_limit, "login", client_ip(request) or "unknown")


@router.get("", response_model=SsoInfo)
def sso_info(ctx: ContextDep) -> SsoInfo:
    """Whether SSO is on, and where a login button should point (no credentials needed)."""
    on = ctx.services.sso is not None
    return SsoInfo(enabled=on, login_path=sso_login_path() if on else None)


@router.get("/start", status_code=303, response_class=RedirectResponse, responses=errors(400, 404, 429))
def sso_start(
    request: Request, ctx: ContextDep, return_to: Annotated[str, Query(max_length=500)] = "/"
) -> RedirectResponse:
    """Redirect the browser to the identity provider (state, nonce and PKCE kept server-side)."""
    _limit(ctx, request)
    started = configured_sso(ctx.services).begin(return_to)
    return RedirectResponse(started.authorization_url, status_code=303)


@router.get(
    "/callback",
    status_code=303,
    response_class=RedirectResponse,
    response_model=None,
    responses={
        **errors(400, 403, 404, 409, 429),
        200: {"description": "CLI sign-in finished (an HTML page)"},
    },
)
def sso_callback(
    request: Request,
    ctx: ContextDep,
    code: Annotated[str, Query(min_length=1, max_length=2000)],
    state: Annotated[str, Query(min_length=1, max_length=200)],
    iss: Annotated[str | None, Query(max_length=500)] = None,
) -> RedirectResponse | HTMLResponse:
    _limit(ctx, request)
    done = configured_sso(ctx.services).complete(code, state, iss, client_ip(request))
    if done.linked:
        return RedirectResponse(f"{done.return_to}#sso_linked=1", status_code=303)
    if done.handoff_code is None:
        return HTMLResponse(DONE_PAGE)
    return RedirectResponse(f"{done.return_to}#sso_code={done.handoff_code}", status_code=303)


class LinkStart(BaseModel):
    authorization_url: str = Field(description="open this in the same browser to link the identity")
    expires_in: int


@router.post("/link", response_model=LinkStart, status_code=201, responses=errors(400, 401, 404, 429))
def sso_link_start(
    principal: CurrentPrincipal,
    request: Request,
    ctx: ContextDep,
    return_to: Annotated[str, Query(max_length=500)] = "/",
) -> LinkStart:
    """Link an identity at the provider to the signed-in account (the only way to join existing ones)."""
    _limit(ctx, request)
    started = configured_sso(ctx.services).begin(return_to, link_user_id=principal.user_id)
    return LinkStart(authorization_url=started.authorization_url, expires_in=started.expires_in)


@router.post("/exchange", response_model=TokenResponse, responses=errors(400, 404, 429))
async def sso_exchange(body: CodeBody, request: Request, ctx: ContextDep) -> TokenResponse:
    """The browser's one-time code for a token pair (the ordinary refresh rotation and logout apply)."""
    await run_in_threadpool(_limit, ctx, request)
    pair = await run_in_threadpool(configured_sso(ctx.services).redeem, body.code, client_ip(request))
    return tokens(pair)


@router.post("/cli", response_model=CliStart, status_code=201, responses=errors(404, 429))
def sso_cli_start(request: Request, ctx: ContextDep) -> CliStart:
    """Start a browser-less (device-style) sign-in: print the URL, then poll with the token."""
    _limit(ctx, request)
    started = configured_sso(ctx.services).begin("/", cli=True)
    assert started.poll_token is not None
    return CliStart(
        authorization_url=started.authorization_url,
        poll_token=started.poll_token,
        expires_in=started.expires_in,
    )


@router.post("/cli/poll", response_model=TokenResponse, responses=errors(400, 404, 409))
def sso_cli_poll(body: PollBody, request: Request, ctx: ContextDep) -> TokenResponse:
    """409 ``authorization_pending`` until the browser sign-in finishes; then a token pair, once."""
    return tokens(configured_sso(ctx.services).poll(body.poll_token, client_ip(request)))
