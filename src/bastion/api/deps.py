"""Annotated dependencies: the context, the caller, role gates, and each service by type.

Routes name what they use (``jobs: JobsDep``) instead of reading ``ctx.services``; the dependencies
only read app state, so they add nothing to the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import Depends, Request

from bastion.api.openapi import ROLE_GATE, USER_AUTH
from bastion.audit import AuditRecord
from bastion.auth.principal import Principal
from bastion.auth.roles import Role
from bastion.auth.signup import Signups
from bastion.auth.sso import SingleSignOn
from bastion.catalog.datasets import DatasetCatalog
from bastion.catalog.encrypted import EncryptedInference
from bastion.catalog.model_versions import ModelVersions
from bastion.context import Context
from bastion.errors import Forbidden, NotFound, Unauthorized
from bastion.federation.server.coordinator import Coordinator
from bastion.federation.server.service import FederationService
from bastion.federation.server.site import SiteService
from bastion.jobs.service import JobService
from bastion.llm.base_models import BaseModels
from bastion.llm.files import FineTuneFiles
from bastion.llm.generate import Generator
from bastion.llm.service import FineTuning
from bastion.projects.service import ProjectService
from bastion.wiring import Services


async def get_context(request: Request) -> Context:
    # async: it only reads app state, and a sync dependency would cost a threadpool hop per request.
    ctx: Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[Context, Depends(get_context)]


def services(request: Request) -> Services:
    ctx: Context = request.app.state.ctx
    return ctx.services


# One async getter per service (async: no threadpool hop), each with its Annotated alias.
async def get_jobs(request: Request) -> JobService:
    return services(request).jobs


async def get_datasets(request: Request) -> DatasetCatalog:
    return services(request).datasets


async def get_models(request: Request) -> ModelVersions:
    return services(request).models


async def get_encrypted(request: Request) -> EncryptedInference:
    return services(request).encrypted


async def get_projects(request: Request) -> ProjectService:
    return services(request).projects


async def get_signups(request: Request) -> Signups:
    return services(request).signups


def configured_sso(services: Services) -> SingleSignOn:
    """The OIDC relying party, or 404 where this server has none configured.

    Called inside the SSO handlers rather than as a dependency: they charge the login rate limit and
    validate the body first, and a dependency would answer 404 before either.
    """
    sso = services.sso
    if sso is None:
        raise NotFound("single sign-on is not configured on this server", code="sso_not_configured")
    return sso


async def get_federations(request: Request) -> FederationService:
    return services(request).federations


async def get_sites(request: Request) -> SiteService:
    return services(request).fl_sites


async def get_coordinator(request: Request) -> Coordinator:
    return services(request).fl_coordinator


async def get_base_models(request: Request) -> BaseModels:
    return services(request).llm_bases


async def get_fine_tune_files(request: Request) -> FineTuneFiles:
    return services(request).ft_files


async def get_fine_tuning(request: Request) -> FineTuning:
    return services(request).fine_tuning


async def get_generation(request: Request) -> Generator:
    return services(request).generation


JobsDep = Annotated[JobService, Depends(get_jobs)]
DatasetsDep = Annotated[DatasetCatalog, Depends(get_datasets)]
ModelsDep = Annotated[ModelVersions, Depends(get_models)]
EncryptedDep = Annotated[EncryptedInference, Depends(get_encrypted)]
ProjectsDep = Annotated[ProjectService, Depends(get_projects)]
SignupsDep = Annotated[Signups, Depends(get_signups)]
FederationsDep = Annotated[FederationService, Depends(get_federations)]
SitesDep = Annotated[SiteService, Depends(get_sites)]
CoordinatorDep = Annotated[Coordinator, Depends(get_coordinator)]
BaseModelsDep = Annotated[BaseModels, Depends(get_base_models)]
FineTuneFilesDep = Annotated[FineTuneFiles, Depends(get_fine_tune_files)]
FineTuningDep = Annotated[FineTuning, Depends(get_fine_tuning)]
GenerationDep = Annotated[Generator, Depends(get_generation)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def presented_credential(request: Request) -> str | None:
    """The credential exactly as the caller sent it (the download scheme derives its key from it)."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("Authorization header must be 'Bearer <token or key>'", code="bad_auth_scheme")
    return request.query_params.get("api_key") or None


async def current_principal(request: Request) -> Principal:
    """Authenticate, then charge the caller's rate limit.

    On the event loop only what needs no I/O: a key verified moments ago (see
    ``AuthService.authenticate_async``) and an in-memory rate limit. Database work (a cache miss,
    a JWT, the audit of a denial) and a Redis rate limit run in the threadpool, so the loop never
    waits on them.
    """
    known: Principal | None = getattr(request.state, "api_principal", None)
    if known is not None:  # already authenticated (and charged) for this request by a role gate
        return known
    ctx: Context = request.app.state.ctx  # read directly: one dependency less to solve per request
    credential = presented_credential(request)
    ip = client_ip(request)
    if credential is None:
        await _charge_anonymous(ctx, ip)
        record = ctx.denials.admit(
            AuditRecord("auth.denied", "denied", source_ip=ip, details={"reason": "missing"})
        )
        if record is not None:  # identical denials from one address: one row per window, counted
            await anyio.to_thread.run_sync(ctx.audit.append, record)
        raise Unauthorized(
            "authentication required: send X-API-Key or Authorization: Bearer", code="missing_credentials"
        )
    try:
        principal = await ctx.auth.authenticate_async(credential, ip)
    except Unauthorized as exc:
        if exc.slow_down:  # an address that keeps guessing waits longer for each answer
            await anyio.sleep(exc.slow_down)
        await _charge_anonymous(ctx, ip)
        raise
    request.state.principal = principal  # for the access log (a dashboard session sets it too)
    if ctx.limiter.storage_uri.startswith("memory"):
        ctx.limiter.hit(ctx.settings.rate_limit, "caller", principal.user_id)
    else:
        await anyio.to_thread.run_sync(ctx.limiter.hit, ctx.settings.rate_limit, "caller", principal.user_id)
    request.state.api_principal = principal  # only an API credential sets this one
    return principal


async def _charge_anonymous(ctx: Context, ip: str | None) -> None:
    """Requests without a valid credential share one budget per address (429 past it)."""
    if ctx.limiter.storage_uri.startswith("memory"):
        ctx.limiter.hit(ctx.settings.anonymous_rate_limit, "anonymous", ip or "unknown")
    else:
        await anyio.to_thread.run_sync(
            ctx.limiter.hit, ctx.settings.anonymous_rate_limit, "anonymous", ip or "unknown"
        )


setattr(current_principal, USER_AUTH, True)  # bastion.api.openapi: 401, 429 and the user schemes
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def enforce_role(request: Request, principal: Principal, ctx: Context, minimum: Role) -> None:
    """Refuse (and audit) a caller below ``minimum``: the one role check of the API and the dashboard."""
    if not principal.has(minimum):
        await anyio.to_thread.run_sync(
            ctx.audit.append,
            AuditRecord(
                "auth.forbidden",
                "denied",
                principal.user_id,
                principal.username,
                "route",
                request.url.path[:64],
                client_ip(request),
                {"required": minimum.value, "role": principal.role},
            ),
        )
        raise Forbidden(f"this action needs the {minimum.value} role", code="insufficient_role")


def require(minimum: Role) -> Callable[..., Awaitable[Principal]]:
    """A role gate that authenticates by itself: FastAPI solves one dependency per request instead of
    three (gate, principal, context); ``current_principal`` memoises on the request, so a route that
    also asks for ``CurrentPrincipal`` elsewhere (idempotency) is still authenticated and charged once."""

    async def gate(request: Request) -> Principal:
        principal = await current_principal(request)
        await enforce_role(request, principal, request.app.state.ctx, minimum)
        return principal

    setattr(gate, ROLE_GATE, True)  # bastion.api.openapi: 403
    setattr(gate, USER_AUTH, True)  # and what authentication adds: 401, 423, 429 and the user schemes
    return gate


AdminPrincipal = Annotated[Principal, Depends(require(Role.ADMIN))]
UserPrincipal = Annotated[Principal, Depends(require(Role.USER))]
