"""The app factory: settings in, a FastAPI app out. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.formparsers import MultiPartParser

from bastion import __version__
from bastion.api import openapi, problems
from bastion.api.middleware import GatewayMiddleware, Metrics
from bastion.api.routes import (
    admin,
    admin_training,
    auth,
    datasets,
    federation_site,
    federations,
    health,
    models,
    training,
)
from bastion.config import Settings, resolve_secrets
from bastion.context import Context, build_context
from bastion.federation.server import install as install_federations
from bastion.jobs.hooks import install as install_jobs

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    admin.router,
    datasets.router,
    models.router,
    training.router,
    admin_training.router,
    federations.router,
    federation_site.router,
]
# Routes that accept file uploads get the upload limit; everything else the (small) body limit.
UPLOAD_PREFIXES: tuple[str, ...] = ("/api/v1/datasets", "/api/v1/federations", "/api/v1/models")
# Hooks other subsystems register to extend the context (vault, jobs, federations) at start-up.
CONTEXT_HOOKS: list[Callable[[Context], None]] = [install_jobs, install_federations]


def create_app(settings: Settings | None = None, *, context: Context | None = None) -> FastAPI:
    if context is None:
        context = build_context(resolve_secrets(settings or Settings()))
        for hook in CONTEXT_HOOKS:
            hook(context)
    ctx = context
    metrics = Metrics()
    ctx.services.setdefault("metrics", metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for service in ctx.services.values():
            start = getattr(service, "start", None)
            if callable(start):
                start()
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(
        title="Bastion",
        version=__version__,
        description="Secure remote and federated training on sensitive data.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    # Uploads carry PHI before de-identification: keep multipart parts in memory (the body limit
    # bounds them) instead of letting Starlette spool anything over 1 MiB to a plaintext temp file.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, ctx.settings.max_upload_bytes + 1)
    problems.install(app)
    openapi.install(app)
    for router in ROUTERS:
        app.include_router(router)

    def body_limit(path: str) -> int:
        if path.startswith(UPLOAD_PREFIXES):
            return ctx.settings.max_upload_bytes
        return ctx.settings.max_body_bytes

    app.add_middleware(GatewayMiddleware, metrics=metrics, audit=ctx.audit, body_limit=body_limit)
    return app
