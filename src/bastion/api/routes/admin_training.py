"""Admin view of training: capacity and counts (seeds/000's shape), every job, the price table."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from bastion.api.deps import AdminPrincipal, ContextDep, JobsDep, client_ip
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, Page
from bastion.api.routing import PrefixRouter
from bastion.audit import AuditRecord
from bastion.context import Context
from bastion.contract.jobs import (
    AdminJobSummary,
    AdminStatus,
    CancelResponse,
    Price,
    PricePatch,
    PriceTable,
    PriceTableBody,
    PriceTableUpdated,
    StateName,
)
from bastion.jobs import views
from bastion.jobs.pricing import Price as StoredPrice

router = PrefixRouter(prefix="/api/v1/admin/training", tags=["admin"])


@router.get("/status", response_model=AdminStatus)
def training_status(_: AdminPrincipal, jobs: JobsDep) -> dict[str, Any]:
    """System-wide counts, capacity of the live workers, and health."""
    return jobs.admin_status()


@router.get("/jobs", response_model=Page[AdminJobSummary])
def all_jobs(
    _: AdminPrincipal,
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: CursorQuery = None,
    status: Annotated[StateName | None, Query()] = None,
    owner_id: Annotated[str | None, Query(max_length=36)] = None,
) -> dict[str, Any]:
    """Every user's jobs, newest first."""
    rows, next_cursor = jobs.admin_list(limit, status, owner_id, cursor)
    names = jobs.usernames({j.owner_id for j in rows})
    return {"data": [views.admin_summary(j, names.get(j.owner_id)) for j in rows], "next_cursor": next_cursor}


@router.post("/cancel/{job_id}", response_model=CancelResponse, responses=errors(409))
def admin_cancel(job_id: str, admin: AdminPrincipal, request: Request, jobs: JobsDep) -> dict[str, Any]:
    job, already = jobs.cancel(admin, job_id, ip=client_ip(request), as_admin=True)
    message = "Job was already cancelled" if already else "Job cancelled successfully"
    return {"success": True, "message": message, "job_id": job.id, "status": job.state}


@router.get("/prices", response_model=PriceTable)
def get_prices(_: AdminPrincipal, jobs: JobsDep) -> PriceTable:
    return PriceTable(prices=_public(jobs.prices.all()))


@router.put("/prices", response_model=PriceTableUpdated, responses=errors(409))
def put_prices(
    body: PriceTableBody, admin: AdminPrincipal, request: Request, ctx: ContextDep, jobs: JobsDep
) -> PriceTableUpdated:
    """Replace the whole table (profiles not listed are removed). To change some, use PATCH."""
    table = jobs.prices.replace(
        {name: spec.model_dump() for name, spec in body.prices.items()}, updated_by=admin.user_id
    )
    return _updated(ctx, admin, request, table)


@router.patch("/prices", response_model=PriceTableUpdated, responses=errors(409))
def patch_prices(
    body: PricePatch, admin: AdminPrincipal, request: Request, ctx: ContextDep, jobs: JobsDep
) -> PriceTableUpdated:
    """Merge (RFC 7396): listed profiles are set, ``null`` removes one, the others are kept."""
    changes = {name: None if spec is None else spec.model_dump() for name, spec in body.prices.items()}
    table = jobs.prices.patch(changes, updated_by=admin.user_id)
    return _updated(ctx, admin, request, table)


def _public(table: dict[str, StoredPrice]) -> dict[str, Price]:
    return {name: Price(**p.public()) for name, p in table.items()}


def _updated(ctx: Context, admin: Any, request: Request, table: dict[str, StoredPrice]) -> PriceTableUpdated:
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
    return PriceTableUpdated(prices=_public(table))
