"""Participant routes: a site with its ``bsp_`` credential registers, polls, downloads, submits.

``Authorization: Bearer bsp_...`` authenticates the site for the one federation in the path. Updates
are raw bytes (``application/octet-stream``) in Bastion's envelope format; the server never unpickles.
``GET .../site/info?wait_round=N`` long-polls (up to ``timeout`` seconds) while round N is still the
current round, so sites learn of a new round within milliseconds without hammering the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, client_ip
from bastion.api.middleware import audits_success
from bastion.api.routes.federations import read_capped
from bastion.context import Context
from bastion.errors import BastionError, Unauthorized
from bastion.federation.secagg import AdvertiseKeys, MaskedInput, ShareKeys, UnmaskResponse
from bastion.federation.server.admission import SiteIdentity
from bastion.federation.server.coordinator import LIVE, Coordinator
from bastion.federation.server.sessions import SiteMessage
from bastion.federation.server.site import SiteService

MAX_WAIT_S = 30.0
POLL_S = 0.02


class RegisterRequest(BaseModel):
    signing_public_key: str = Field(min_length=43, max_length=64, description="raw Ed25519 key, base64url")
    num_samples: int | None = Field(
        None, ge=1, le=10**9, description="training rows at this site: the most its updates may weigh"
    )


def _sites(ctx: Context) -> SiteService:
    svc: SiteService = ctx.services["fl_sites"]
    return svc


def _coordinator(ctx: Context) -> Coordinator:
    svc: Coordinator = ctx.services["fl_coordinator"]
    return svc


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization header must be 'Bearer bsp_...'", code="bad_auth_scheme")
    return value.strip()


def _authenticate(
    ctx: Context, federation_id: str, token: str | None, ip: str | None, action: str
) -> SiteIdentity:
    """Authenticate the site, then charge its rate limit (failures are charged to the source address)."""
    try:
        site = _sites(ctx).authenticate(federation_id, token, ip, action)
    except Unauthorized:
        ctx.limiter.hit(ctx.settings.login_rate_limit, "fl-site-auth", ip or "unknown")
        raise
    ctx.limiter.hit(ctx.settings.rate_limit, "fl-site", site.participant_id)
    return site


async def _site(ctx: Context, request: Request, federation_id: str, action: str) -> SiteIdentity:
    """The site :class:`SiteRoute` authenticated before the body was read."""
    site = getattr(request.state, "site", None)
    if isinstance(site, SiteIdentity):
        return site
    return await run_in_threadpool(
        _authenticate, ctx, federation_id, _token(request), client_ip(request), action
    )


# The audit action of each route's authentication (default fl.site.auth).
_ACTIONS = {"register": "fl.participant.register", "submit_update": "fl.update"}


class SiteRoute(APIRoute):
    """Authenticates the site before FastAPI reads (and parses) the body.

    FastAPI reads a route's body before it resolves dependencies, so an anonymous caller could make
    the server buffer and parse a large JSON body only to be refused afterwards. Here the ``bsp_``
    credential is checked first; the endpoint then finds the site in ``request.state.site``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        action = _ACTIONS.get(self.name, "fl.secagg" if self.name.startswith("secagg_") else "fl.site.auth")

        async def authenticated(request: Request) -> Response:
            ctx: Context = request.app.state.ctx
            request.state.site = await run_in_threadpool(
                _authenticate,
                ctx,
                request.path_params["federation_id"],
                _token(request),
                client_ip(request),
                action,
            )
            return await handler(request)

        return authenticated


router = APIRouter(
    prefix="/api/v1/federations/{federation_id}/site", tags=["federation sites"], route_class=SiteRoute
)


@router.post("/register")
async def register(
    federation_id: str, body: RegisterRequest, ctx: ContextDep, request: Request
) -> dict[str, Any]:
    site = await _site(ctx, request, federation_id, "fl.participant.register")
    return await run_in_threadpool(
        _sites(ctx).register, site, body.signing_public_key, client_ip(request), body.num_samples
    )


@router.get("/info")
async def info(
    federation_id: str,
    ctx: ContextDep,
    request: Request,
    wait_round: Annotated[int | None, Query(ge=0)] = None,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 20.0,
) -> dict[str, Any]:
    site = await _site(ctx, request, federation_id, "fl.site.auth")
    sites, coordinator = _sites(ctx), _coordinator(ctx)
    epoch = coordinator.epoch(federation_id)
    state = await run_in_threadpool(sites.info, site)
    if wait_round is None or state["round"] != wait_round or state["state"] not in LIVE:
        return state
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        await asyncio.sleep(POLL_S)
        if coordinator.epoch(federation_id) != epoch:
            break
    return await run_in_threadpool(sites.info, site)


@router.get("/secagg")
async def secagg_state(
    federation_id: str,
    ctx: ContextDep,
    request: Request,
    wait_session: Annotated[str | None, Query(max_length=200)] = None,
    wait_stage: Annotated[str | None, Query(max_length=20)] = None,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 20.0,
) -> dict[str, Any]:
    """The round's secure-aggregation session for this site: stage, config, peers' keys, its message.

    With ``wait_session``/``wait_stage`` it long-polls while the session is still at that stage.
    """
    site = await _site(ctx, request, federation_id, "fl.site.auth")
    sites, coordinator = _sites(ctx), _coordinator(ctx)
    epoch = coordinator.epoch(federation_id)
    view = await run_in_threadpool(sites.secagg_view, site)
    if wait_stage is None or (view["session"], view["stage"]) != (wait_session, wait_stage):
        return view
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        await asyncio.sleep(POLL_S)
        if coordinator.epoch(federation_id) != epoch:
            break
    return await run_in_threadpool(sites.secagg_view, site)


async def _secagg_send(
    ctx: Context, request: Request, federation_id: str, message: SiteMessage
) -> dict[str, Any]:
    site = await _site(ctx, request, federation_id, "fl.secagg")
    return await run_in_threadpool(_sites(ctx).secagg_receive, site, message, client_ip(request))


def _secagg_route(kind: str, message: type[SiteMessage], summary: str) -> None:
    """One POST route per stage; the body type is the stage's message, validated by pydantic."""

    async def send(federation_id: str, body: Any, ctx: ContextDep, request: Request) -> dict[str, Any]:
        return await _secagg_send(ctx, request, federation_id, body)

    if kind == "masked":  # an accepted masked input is audited as fl.update by the session
        audits_success(send)

    send.__annotations__["body"] = message
    send.__doc__ = summary
    router.add_api_route(f"/secagg/{kind}", send, methods=["POST"], name=f"secagg_{kind}")


for _kind, _message, _summary in (
    (
        "advertise",
        AdvertiseKeys,
        "Stage 1: this site's two round keys, signed with its registered Ed25519 key.",
    ),
    (
        "shares",
        ShareKeys,
        "Stage 2: encrypted shares of this site's secrets, one per neighbour (unreadable here).",
    ),
    ("masked", MaskedInput, "Stage 3: the masked, quantized update; added into the running sum, not kept."),
    ("unmask", UnmaskResponse, "Stage 4: shares that remove the masks left in the sum."),
):
    _secagg_route(_kind, _message, _summary)


@router.get("/model")
async def model(federation_id: str, ctx: ContextDep, request: Request) -> Response:
    """The open round's global model, signed by the server (Bastion's BSTG format)."""
    site = await _site(ctx, request, federation_id, "fl.site.auth")
    number, blob = await run_in_threadpool(_sites(ctx).signed_model, site)
    return Response(blob, media_type="application/octet-stream", headers={"X-Bastion-Round": str(number)})


@router.post("/update", status_code=202)
@audits_success
async def submit_update(federation_id: str, ctx: ContextDep, request: Request) -> dict[str, Any]:
    """A sealed, signed update; each refusal is audited and answered with a 4xx and a reason code."""
    site = await _site(ctx, request, federation_id, "fl.update")
    sites, coordinator = _sites(ctx), _coordinator(ctx)
    ip = client_ip(request)
    limit = await run_in_threadpool(sites.update_limit, federation_id)
    try:
        body = await read_capped(request, limit, "update_too_large")
    except BastionError as exc:
        await run_in_threadpool(coordinator.audit_denial, federation_id, site, exc, None, ip)
        raise
    return await run_in_threadpool(coordinator.submit, site, body, ip)
