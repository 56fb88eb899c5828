"""Participant routes: a site with its ``bsp_`` credential registers, polls, downloads, submits.

``Authorization: Bearer bsp_...`` authenticates the site for the one federation in the path. Updates
are raw bytes (``application/octet-stream``) in Bastion's envelope format; the server never unpickles.
``GET .../site/info?wait_round=N`` long-polls (up to ``timeout`` seconds) while round N is still the
current round; the coordinator's epoch wakes it at the transition (:mod:`bastion.federation.server.epochs`), so sites learn
of a new round at once without polling the server or the database. A secure-aggregation stage message
posted with ``?wait=T`` long-polls the same way for the session to leave that stage and answers with the
next view, and ``/info?secagg=true`` carries the first one: one request per stage instead of two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

import anyio
from fastapi import Depends, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, CoordinatorDep, SitesDep, client_ip
from bastion.api.middleware import audits_success
from bastion.api.openapi import SITE_AUTH, errors
from bastion.api.routes.federations import BINARY_RESPONSE, RAW_BODY, read_capped
from bastion.api.routing import PrefixRouter
from bastion.auth.service import progressive_delay
from bastion.context import Context
from bastion.contract.federations import SiteAnswer
from bastion.errors import BastionError, Unauthorized
from bastion.federation.secagg import AdvertiseKeys, MaskedInput, ShareKeys, UnmaskResponse
from bastion.federation.server.admission import SiteIdentity
from bastion.federation.server.coordinator import Coordinator
from bastion.federation.server.secagg_rounds import STAGE_OF, SiteMessage
from bastion.federation.server.site import SiteService
from bastion.federation.server.states import LIVE

MAX_WAIT_S = 30.0


class RegisterRequest(BaseModel):
    signing_public_key: str = Field(min_length=43, max_length=64, description="raw Ed25519 key, base64url")
    num_samples: int | None = Field(
        None, ge=1, le=10**9, description="training rows at this site: the most its updates may weigh"
    )


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
        site = ctx.services.fl_sites.authenticate(federation_id, token, ip, action)
    except Unauthorized as exc:
        failures = ctx.limiter.hit(ctx.settings.login_rate_limit, "fl-site-auth", ip or "unknown")
        # Like a login: an address that keeps guessing site tokens waits longer for each answer.
        exc.slow_down = progressive_delay(failures, ctx.settings.max_failed_attempts)
        raise
    ctx.limiter.hit(ctx.settings.rate_limit, "fl-site", site.participant_id)
    return site


# The audit action of each route's authentication (default fl.site.auth).
_ACTIONS = {"register": "fl.participant.register", "submit_update": "fl.update"}


async def _authenticate_async(
    ctx: Context, request: Request, federation_id: str, action: str
) -> SiteIdentity:
    """A credential verified moments ago (``SiteService.cached``) with an in-memory rate limit is
    answered on the event loop; anything needing I/O (database, audit of a refusal, Redis) in a thread."""
    token = _token(request)
    try:
        site = ctx.services.fl_sites.cached(federation_id, token)
        if site is not None and ctx.limiter.storage_uri.startswith("memory"):
            ctx.limiter.hit(ctx.settings.rate_limit, "fl-site", site.participant_id)
            return site
        return await run_in_threadpool(_authenticate, ctx, federation_id, token, client_ip(request), action)
    except Unauthorized as exc:
        exc.details["scheme"] = "site"  # WWW-Authenticate names the site scheme
        if exc.slow_down:  # on the event loop, not a thread held
            await anyio.sleep(exc.slow_down)
        raise


class SiteRoute(APIRoute):
    """Authenticates the site before FastAPI reads (and parses) the body.

    FastAPI reads a route's body before it resolves dependencies, so an anonymous caller could make
    the server buffer and parse a large JSON body (and learn its fields from a 422) only to be refused
    afterwards. Here the ``bsp_`` credential is checked first; :func:`site_auth` then finds the site
    in ``request.state.site``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        action = _ACTIONS.get(self.name, "fl.secagg" if self.name.startswith("secagg_") else "fl.site.auth")

        async def authenticated(request: Request) -> Response:
            ctx: Context = request.app.state.ctx
            fid = request.path_params["federation_id"]
            request.state.site = await _authenticate_async(ctx, request, fid, action)
            return await handler(request)

        return authenticated


def site_auth(action: str) -> Callable[..., Awaitable[SiteIdentity]]:
    """The authenticated site as a dependency (the route class authenticated it before the body)."""

    async def authenticate(federation_id: str, request: Request) -> SiteIdentity:
        site = getattr(request.state, "site", None)
        if isinstance(site, SiteIdentity):
            return site
        ctx: Context = request.app.state.ctx
        return await _authenticate_async(ctx, request, federation_id, action)

    setattr(authenticate, SITE_AUTH, True)  # bastion.api.openapi: 401, 429 and the site scheme
    return authenticate


SiteAuth = Annotated[SiteIdentity, Depends(site_auth("fl.site.auth"))]
router = PrefixRouter(
    prefix="/api/v1/federations/{federation_id}/site", tags=["federation sites"], route_class=SiteRoute
)


@router.post("/register", response_model=SiteAnswer, responses=errors(409))
async def register(
    federation_id: str,
    body: RegisterRequest,
    sites: SitesDep,
    request: Request,
    site: Annotated[SiteIdentity, Depends(site_auth("fl.participant.register"))],
) -> dict[str, Any]:
    return await run_in_threadpool(
        sites.register, site, body.signing_public_key, client_ip(request), body.num_samples
    )


def _services(request: Request) -> tuple[SiteService, Coordinator]:
    """The site service and coordinator, read directly on the three routes every site calls every
    round (info, model, update): two dependencies fewer for FastAPI to solve per request."""
    services = request.app.state.ctx.services
    return services.fl_sites, services.fl_coordinator


@router.get("/info", response_model=SiteAnswer)
async def info(
    federation_id: str,
    request: Request,
    site: SiteAuth,
    wait_round: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 20.0,
    secagg: Annotated[
        bool,
        Query(
            description="in a secure federation's open round, also answer the site's session view "
            "(`GET .../secagg`) as `secagg`"
        ),
    ] = False,
) -> dict[str, Any]:
    sites, coordinator = _services(request)
    epoch = coordinator.epoch(federation_id)
    state = await _info(sites, site)
    if wait_round is not None and state["round"] == wait_round and state["state"] in LIVE:
        await coordinator.epochs.wait(federation_id, epoch, timeout)
        state = await _info(sites, site)
    if secagg and state["secure_aggregation"] and state["round_state"] == "open" and state["selected"]:
        state = {**state, "secagg": await _secagg_view(sites, site)}  # saves the site a request
    return state


async def _info(sites: SiteService, site: SiteIdentity) -> dict[str, Any]:
    """From memory on the event loop when nothing needs I/O (the usual case), else in a thread."""
    state = sites.info_nowait(site)
    return state if state is not None else await run_in_threadpool(sites.info, site)


@router.get("/secagg", response_model=SiteAnswer, responses=errors(409))
async def secagg_state(
    federation_id: str,
    sites: SitesDep,
    coordinator: CoordinatorDep,
    site: SiteAuth,
    wait_session: Annotated[str | None, Query(max_length=200)] = None,
    wait_stage: Annotated[str | None, Query(max_length=20)] = None,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 20.0,
) -> dict[str, Any]:
    """The round's secure-aggregation session for this site: stage, config, peers' keys, its message.

    With ``wait_session``/``wait_stage`` it long-polls while the session is still at that stage.
    """
    if wait_stage is None:
        return await _secagg_view(sites, site)
    return await _view_after(sites, coordinator, site, (wait_session, wait_stage), timeout)


async def _view_after(
    sites: SiteService,
    coordinator: Coordinator,
    site: SiteIdentity,
    waited: tuple[str | None, str],
    timeout: float,
) -> dict[str, Any]:
    """The site's session view once (session, stage) is no longer ``waited``, or when ``timeout`` runs out.

    The epoch is read before each view, so a transition between the view and the wait is not missed.
    """
    deadline = anyio.current_time() + timeout
    while True:
        epoch = coordinator.epoch(site.federation_id)
        view = await _secagg_view(sites, site)
        left = deadline - anyio.current_time()
        if (view["session"], view["stage"]) != waited or left <= 0:
            return view
        await coordinator.epochs.wait(site.federation_id, epoch, left)


async def _secagg_view(sites: SiteService, site: SiteIdentity) -> dict[str, Any]:
    """From memory on the event loop while a stage runs, else in a thread (it may start or move a session)."""
    view = sites.secagg_view_nowait(site)
    return view if view is not None else await run_in_threadpool(sites.secagg_view, site)


SecaggSite = Annotated[SiteIdentity, Depends(site_auth("fl.secagg"))]


def _secagg_route(kind: str, message: type[SiteMessage], summary: str) -> None:
    """One POST route per stage; the body type is the stage's message, validated by pydantic."""

    async def send(
        federation_id: str,
        body: Any,
        ctx: ContextDep,
        request: Request,
        site: SecaggSite,
        wait: Annotated[
            float | None,
            Query(
                ge=0,
                le=MAX_WAIT_S,
                description="long-poll up to this many seconds for the session to leave the stage "
                "just answered; the answer then carries the session view as `view`",
            ),
        ] = None,
    ) -> dict[str, Any]:
        sites = ctx.services.fl_sites
        answer = await run_in_threadpool(sites.secagg_receive, site, body, client_ip(request))
        if wait is not None:  # the view the site would long-poll GET .../secagg for next, in this answer
            answered = (body.round_id, STAGE_OF[type(body)].value)
            answer["view"] = await _view_after(sites, sites.coordinator, site, answered, wait)
        return answer

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
async def model(federation_id: str, request: Request, site: SiteAuth) -> Response:
    """The open round's global model, signed by the server (Bastion's BSTG format)."""
    sites, _coordinator = _services(request)
    signed = sites.signed_model_nowait(site)  # this round's model, signed already: no thread needed
    number, blob = signed if signed is not None else await run_in_threadpool(sites.signed_model, site)
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
    request: Request,
    site: Annotated[SiteIdentity, Depends(site_auth("fl.update"))],
) -> dict[str, Any]:
    """A sealed, signed update; each refusal is audited and answered with a 4xx and a reason code."""
    sites, coordinator = _services(request)
    ip = client_ip(request)
    limit = sites.cached_update_limit(federation_id)
    if limit is None:
        limit = await run_in_threadpool(sites.update_limit, federation_id)
    try:
        body = await read_capped(request, limit, "update_too_large")
    except BastionError as exc:
        await run_in_threadpool(coordinator.audit_denial, federation_id, site, exc, None, ip)
        raise
    return await run_in_threadpool(coordinator.submit, site, body, ip)
