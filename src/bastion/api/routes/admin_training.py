"""Admin view of training: capacity and counts (seeds/000's shape), every job, the price table."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from bastion.api.deps import AdminPrincipal, ContextDep, client_ip
from bastion.api.routes.training import jobs
from bastion.audit import AuditRecord
from bastion.jobs import views

router = APIRouter(prefix="/api/v1/admin/training", tags=["admin"])


class PriceSpec(BaseModel):
    hourly_cost: float = Field(ge=0, le=1e6)
    currency: str = Field("USD", min_length=3, max_length=8)
    speedup: float = Field(1.0, gt=0, le=1e4, description="How much faster than the reference CPU")
    description: str = Field("", max_length=200)


class PriceTableBody(BaseModel):
    prices: dict[str, PriceSpec] = Field(min_length=1, max_length=50)


@router.get("/status")
def training_status(_: AdminPrincipal, ctx: ContextDep) -> dict[str, Any]:
    """System-wide counts, capacity of the live workers, and health."""
    return jobs(ctx).admin_status()


@router.get("/jobs")
def all_jobs(
    _: AdminPrincipal,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    status: Annotated[
        Literal["pending", "running", "completed", "failed", "cancelled"] | None, Query()
    ] = None,
    owner_id: Annotated[str | None, Query(max_length=36)] = None,
) -> dict[str, Any]:
    rows = jobs(ctx).admin_list(limit, status, owner_id)
    names = jobs(ctx).usernames({j.owner_id for j in rows})
    return {"jobs": [views.admin_summary(j, names.get(j.owner_id)) for j in rows]}


@router.post("/cancel/{job_id}")
def admin_cancel(job_id: str, admin: AdminPrincipal, request: Request, ctx: ContextDep) -> dict[str, Any]:
    job, already = jobs(ctx).cancel(admin, job_id, ip=client_ip(request), as_admin=True)
    message = "Job was already cancelled" if already else "Job cancelled successfully"
    return {"success": True, "message": message, "job_id": job.id, "status": job.state}


@router.get("/prices")
def get_prices(_: AdminPrincipal, ctx: ContextDep) -> dict[str, Any]:
    return {"prices": {name: p.public() for name, p in jobs(ctx).prices.all().items()}}


@router.put("/prices")
def put_prices(
    body: PriceTableBody, admin: AdminPrincipal, request: Request, ctx: ContextDep
) -> dict[str, Any]:
    """Replace the whole price table (profiles not listed are removed)."""
    table = jobs(ctx).prices.replace(
        {name: spec.model_dump() for name, spec in body.prices.items()}, updated_by=admin.user_id
    )
    ctx.audit.append(
        AuditRecord(
            "training.prices.update",
            "success",
            admin.user_id,
            admin.username,
            "price_table",
            None,
            client_ip(request),
            {"profiles": sorted(table)},
        )
    )
    return {"success": True, "prices": {name: p.public() for name, p in table.items()}}
