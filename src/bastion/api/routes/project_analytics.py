"""Per-project analytics, one route per view (contributions, models, training, resources, federations)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from bastion.api.deps import ContextDep, UserPrincipal
from bastion.api.openapi import errors
from bastion.api.routing import PrefixRouter
from bastion.contract.projects import (
    Contributions,
    ModelsOverTime,
    Participation,
    ResourceUse,
    TrainingHistory,
)
from bastion.projects.service import ProjectService

router = PrefixRouter(prefix="/api/v1/projects/{project_id}/analytics", tags=["projects"])
ProjectId = Annotated[str, Path(max_length=36)]


def _view(ctx: ContextDep, principal: Any, project_id: str, view: str) -> Any:
    svc: ProjectService = ctx.services.projects
    return svc.analytics(principal, project_id, view)


@router.get("/contributions", response_model=Contributions, responses=errors(404))
def contributions(project_id: ProjectId, principal: UserPrincipal, ctx: ContextDep) -> Any:
    """Per person: datasets and rows uploaded, jobs started, federation rounds their sites took part in."""
    return _view(ctx, principal, project_id, "contributions")


@router.get("/models", response_model=ModelsOverTime, responses=errors(404))
def models(project_id: ProjectId, principal: UserPrincipal, ctx: ContextDep) -> Any:
    """Model performance over time: every version of every model with its metrics."""
    return _view(ctx, principal, project_id, "models")


@router.get("/training", response_model=TrainingHistory, responses=errors(404))
def training(project_id: ProjectId, principal: UserPrincipal, ctx: ContextDep) -> Any:
    """Training history: the newest jobs with outcome, duration and metrics; counts by state."""
    return _view(ctx, principal, project_id, "training")


@router.get("/resources", response_model=ResourceUse, responses=errors(404))
def resources(project_id: ProjectId, principal: UserPrincipal, ctx: ContextDep) -> Any:
    """CPU-hours, GPU-hours and cost (current price table) of finished jobs, per person and in all."""
    return _view(ctx, principal, project_id, "resources")


@router.get("/federations", response_model=Participation, responses=errors(404))
def federations(project_id: ProjectId, principal: UserPrincipal, ctx: ContextDep) -> Any:
    """Participation in the project's federations: progress, sites, guests, rounds per person."""
    return _view(ctx, principal, project_id, "federations")
