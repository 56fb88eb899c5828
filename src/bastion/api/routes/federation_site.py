"""Participant routes: a site with its ``bsp_`` credential registers, polls, downloads, submits.

``Authorization: Bearer bsp_...`` authenticates the site for the one federation in the path. Updates
are raw bytes (``application/octet-stream``) in Bastion's envelope format; the server never unpickles.
``GET .../site/info?wait_round=N`` long-polls (up to ``timeout`` seconds) while round N is still the
current round, so sites learn of a new round within milliseconds without hammering the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, client_ip
from bastion.api.middleware import audits_success
from bastion.api.openapi import SITE_AUTH, errors
from bastion.api.routes.federations import BINARY_RESPONSE, RAW_BODY, read_capped
from bastion.context import Context
from bastion.contract.federations import SiteAnswer
from bastion.errors import BastionError, Unauthorized
from bastion.federation.secagg import AdvertiseKeys, MaskedInput, ShareKeys, UnmaskResponse
from bastion.federation.server.admission import SiteIdentity
from bastion.federation.server.coordinator import LIVE, Coordinator
from bastion.federation.server.sessions import SiteMessage
from bastion.federation.server.site import SiteService

router = APIRouter(prefix="/api/v1/federations/{federation_id}/site", tags=["federation sites"])
MAX_WAIT_S = 30.0
POLL_S = 0.02


class RegisterRequest(BaseModel):
    signing_public_key: str = Field(min_length=43, max_length=64, description="raw Ed25519 key, base64url")


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
        raise Unauthorized(
            "Authorization header must be 'Bearer bsp_...'", code="bad_auth_scheme", scheme="site"
        )
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


def site_auth(action: str) -> Callable[..., Awaitable[SiteIdentity]]:
    """A dependency that authenticates the site before anything else about the request is looked at
    (its body included: an anonymous caller learns nothing about the fields)."""

    async def authenticate(federation_id: str, request: Request) -> SiteIdentity:
        ctx: Context = request.app.state.ctx
        try:
            return await run_in_threadpool(
                _authenticate, ctx, federation_id, _token(request), client_ip(request), action
            )
        except Unauthorized as exc:
            exc.details["scheme"] = "site"  # WWW-Authenticate names the site scheme
            raise

    setattr(authenticate, SITE_AUTH, True)  # bastion.api.openapi: 401, 429 and the site scheme
    return authenticate


SiteAuth = Annotated[SiteIdentity, Depends(site_auth("fl.site.auth"))]


@router.post("/register", response_model=SiteAnswer, responses=errors(409))
async def register(
    federation_id: str,
    body: RegisterRequest,
    ctx: ContextDep,
    request: Request,
    site: Annotated[SiteIdentity, Depends(site_auth("fl.participant.register"))],
) -> dict[str, Any]:
    return await run_in_threadpool(_sites(ctx).register, site, body.signing_public_key, client_ip(request))


@router.get("/info", response_model=SiteAnswer)
async def info(
    federation_id: str,
    ctx: ContextDep,
    site: SiteAuth,
    wait_round: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 20.0,
) -> dict[str, Any]:
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


@router.get("/secagg", response_model=SiteAnswer, responses=errors(409))
async def secagg_state(
    federation_id: str,
    ctx: ContextDep,
    site: SiteAuth,
    wait_session: Annotated[str | None, Query(max_length=200)] = None,
    wait_stage: Annotated[str | None, Query(max_length=20)] = None,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 20.0,
) -> dict[str, Any]:
    """The round's secure-aggregation session for this site: stage, config, peers' keys, its message.

    With ``wait_session``/``wait_stage`` it long-polls while the session is still at that stage.
    """
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


SecaggSite = Annotated[SiteIdentity, Depends(site_auth("fl.secagg"))]


def _secagg_route(kind: str, message: type[SiteMessage], summary: str) -> None:
    """One POST route per stage; the body type is the stage's message, validated by pydantic."""

    async def send(
        federation_id: str, body: Any, ctx: ContextDep, request: Request, site: SecaggSite
    ) -> dict[str, Any]:
        return await run_in_threadpool(_sites(ctx).secagg_receive, site, body, client_ip(request))

    if kind == "masked":  # an accepted masked input is audited as fl.update by the session
        audits_success(send)

    send.__annotations__["body"] = message
    send.__doc__ = summary
    router.add_api_route(
        f"/secagg/{kind}",
        send,
        methods=["POST"],
        name=f"secagg_{kind}",
        response_model=SiteAnswer,
        responses=errors(400, 409),
    )


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


@router.get("/model", response_class=Response, responses={**BINARY_RESPONSE, **errors(409)})
async def model(federation_id: str, ctx: ContextDep, site: SiteAuth) -> Response:
    """The open round's global model, signed by the server (Bastion's BSTG format)."""
    number, blob = await run_in_threadpool(_sites(ctx).signed_model, site)
    return Response(blob, media_type="application/octet-stream", headers={"X-Bastion-Round": str(number)})


@router.post(
    "/update",
    status_code=202,
    response_model=SiteAnswer,
    responses=errors(400, 409),
    openapi_extra=RAW_BODY,
)
@audits_success
async def submit_update(
    federation_id: str,
    ctx: ContextDep,
    request: Request,
    site: Annotated[SiteIdentity, Depends(site_auth("fl.update"))],
) -> dict[str, Any]:
    """A sealed, signed update; each refusal is audited and answered with a 4xx and a reason code."""
    sites, coordinator = _sites(ctx), _coordinator(ctx)
    ip = client_ip(request)
    limit = await run_in_threadpool(sites.update_limit, federation_id)
    try:
        body = await read_capped(request, limit, "update_too_large")
    except BastionError as exc:
        await run_in_threadpool(coordinator.audit_denial, federation_id, site, exc, None, ip)
        raise
    return await run_in_threadpool(coordinator.submit, site, body, ip)
