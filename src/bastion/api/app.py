"""The app factory: settings in, a FastAPI app out. Nothing is built at import time."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.formparsers import MultiPartParser

from bastion import __version__
from bastion.api import docs, openapi, problems
from bastion.api.middleware import GatewayMiddleware, Metrics
from bastion.api.routes import (
    admin,
    admin_training,
    auth,
    datasets,
    encrypted,
    federation_sharing,
    federation_site,
    federations,
    fine_tuning,
    health,
    llm,
    models,
    project_analytics,
    projects,
    signup,
    sso,
    training,
)
from bastion.config import Settings, resolve_secrets
from bastion.context import Context, build_context
from bastion.web import install as install_web
from bastion.wiring import install_services

# The site routes first: a federation round is mostly their requests (poll, model, update), and each
# request is matched against the routers in this order (every router is a PrefixRouter, so one passed
# over costs a prefix check). No route matches another router's paths (tests/api/test_routing.py), so
# the order changes nothing else.
ROUTERS: list[APIRouter] = [
    federation_site.router,
    health.router,
    auth.router,
    admin.router,
    datasets.router,
    models.router,
    training.router,
    admin_training.router,
    federations.router,
    fine_tuning.router,
    llm.router,
    encrypted.router,
]
ROUTERS += [
    signup.router,
    signup.admin_router,
    sso.router,
    projects.router,
    project_analytics.router,
    federation_sharing.router,
]
# Routes that accept file uploads get the upload limit; everything else (JSON) the small body limit.
UPLOAD_ROUTES = re.compile(
    r"/datasets/upload"
    r"|/api/v1/(?:datasets|fine_tuning/files|federations/[^/]+/(?:model|site/update|site/secagg/masked))"
)
ENCRYPTED_SUFFIX = "/predict/encrypted"  # ciphertexts: their own, larger, body limit


def create_app(settings: Settings | None = None, *, context: Context | None = None) -> FastAPI:
    if context is None:
        context = build_context(resolve_secrets(settings or Settings()))
    if not context.wired:
        install_services(context)
    ctx = context
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.services.start()
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(
        title="Bastion",
        version=__version__,
        description="Secure remote and federated training on sensitive data.",
        lifespan=lifespan,
        docs_url=None,  # served by bastion.api.docs from the swagger-ui-bundle package (no CDN)
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.metrics = metrics  # this app's request counters, read by /metrics
    # Uploads carry PHI before de-identification: keep multipart parts in memory (the body limit
    # bounds them) instead of letting Starlette spool anything over 1 MiB to a plaintext temp file.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, ctx.settings.max_upload_bytes + 1)
    problems.install(app)
    docs.install(app)
    openapi.install(app)
    for router in ROUTERS:
        app.include_router(router)
    install_web(app)

    def body_limit(path: str) -> int:
        if path.endswith(ENCRYPTED_SUFFIX):
            return ctx.settings.he_max_request_bytes
        if UPLOAD_ROUTES.fullmatch(path):
            return ctx.settings.max_upload_bytes
        return ctx.settings.max_body_bytes

    app.add_middleware(
        GatewayMiddleware, metrics=metrics, audit=ctx.audit, body_limit=body_limit, denials=ctx.denials
    )
    return app
