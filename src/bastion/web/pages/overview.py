"""Overview: the caller's running and queued jobs, active federations, recent models, capacity
(admins: the same figures as ``GET /admin/training/status``) and the machine's CPU, memory, disk."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.federation.server.service import FederationService
from bastion.federation.server.states import LIVE
from bastion.jobs import views
from bastion.jobs.service import JobService
from bastion.web.listing import gather
from bastion.web.pages.base import Ctx, Session, page_router
from bastion.web.render import page

router = page_router()


def machine(ctx: Context) -> dict[str, Any]:
    """CPU, memory and the data directory's disk, as psutil reads them (no blocking sample)."""
    import psutil

    mem = psutil.virtual_memory()
    disk = psutil.disk_usage(str(ctx.settings.data_dir))
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpus": psutil.cpu_count() or 1,
        "memory_percent": mem.percent,
        "memory_used": mem.total - mem.available,
        "memory_total": mem.total,
        "disk_percent": disk.percent,
        "disk_used": disk.used,
        "disk_total": disk.total,
    }


def overview_data(ctx: Context, principal: Principal) -> dict[str, Any]:
    jobs: JobService = ctx.services.jobs
    feds: FederationService = ctx.services.federations
    running = [views.summary(j) for j in jobs.list_for(principal, 20, "running")[0]]
    queued = [views.summary(j) for j in jobs.list_for(principal, 20, "pending")[0]]
    federations = [f for f in gather(lambda n, c: feds.list_for(principal, n, c)) if f["state"] in LIVE]
    models = gather(lambda n, c: ctx.services.models.list_for(principal, n, c))[-5:][::-1]
    capacity = jobs.admin_status() if principal.is_admin else None
    return {
        "running": running,
        "queued": queued,
        "federations": federations,
        "models": models,
        "capacity": capacity,
        "machine": machine(ctx),
    }


@router.get("/")
def overview(request: Request, ctx: Ctx, session: Session) -> Response:
    return page(request, "overview.html", **overview_data(ctx, session.principal))


@router.get("/overview/live")
def overview_live(request: Request, ctx: Ctx, session: Session) -> Response:
    return page(request, "partials/overview_live.html", **overview_data(ctx, session.principal))
