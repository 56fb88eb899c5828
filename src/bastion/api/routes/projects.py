"""Projects: shared spaces with members and roles that own datasets, models, jobs and federations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request, Response
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ProjectsDep, UserPrincipal, client_ip
from bastion.api.idempotency import Idempotent
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, LimitQuery, Page
from bastion.api.routing import PrefixRouter
from bastion.contract.common import Ack
from bastion.contract.projects import (
    Domains,
    Member,
    MemberAdd,
    MemberRole,
    Project,
    ProjectCreate,
    ProjectDetail,
    ProjectUpdate,
)

router = PrefixRouter(prefix="/api/v1/projects", tags=["projects"])
ProjectId = Annotated[str, Path(max_length=36)]
UserRef = Annotated[str, Path(max_length=64)]


@router.get("/domains", response_model=Domains)
def domains(_: UserPrincipal, projects: ProjectsDep) -> dict[str, Any]:
    """The domain taxonomy projects are filed under (``BASTION_PROJECT_DOMAINS``)."""
    return {"domains": {d: list(s) for d, s in projects.taxonomy.domains.items()}}


@router.post("", status_code=201, response_model=ProjectDetail, responses=errors(409))
async def create(
    body: ProjectCreate,
    principal: UserPrincipal,
    request: Request,
    projects: ProjectsDep,
    idem: Idempotent,
    response: Response,
) -> Any:
    """Create a project; you become its owner."""
    if (replay := idem.replay()) is not None:
        return replay
    view = await run_in_threadpool(
        projects.create,
        principal,
        name=body.name,
        domain=body.domain,
        subdomain=body.subdomain,
        ip=client_ip(request),
    )
    result = ProjectDetail.model_validate(view)
    return await run_in_threadpool(idem.created, response, result, f"/api/v1/projects/{result.id}")


@router.get("", response_model=Page[Project])
def list_projects(
    principal: UserPrincipal, projects: ProjectsDep, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> dict[str, Any]:
    """The projects you are a member of (your personal project included), oldest first."""
    data, next_cursor = projects.list_for(principal, limit, cursor)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{project_id}", response_model=ProjectDetail, responses=errors(404))
def get_project(project_id: ProjectId, principal: UserPrincipal, projects: ProjectsDep) -> dict[str, Any]:
    return projects.get(principal, project_id)


@router.patch("/{project_id}", response_model=ProjectDetail, responses=errors(403, 404, 409))
def update_project(
    project_id: ProjectId,
    body: ProjectUpdate,
    principal: UserPrincipal,
    request: Request,
    projects: ProjectsDep,
) -> dict[str, Any]:
    """Rename or re-file a project (maintainers and owners)."""
    return projects.update(
        principal,
        project_id,
        name=body.name,
        domain=body.domain,
        subdomain=body.subdomain,
        ip=client_ip(request),
    )


@router.post("/{project_id}/members", status_code=201, response_model=Member, responses=errors(403, 404, 409))
def add_member(
    project_id: ProjectId,
    body: MemberAdd,
    principal: UserPrincipal,
    request: Request,
    projects: ProjectsDep,
    response: Response,
) -> dict[str, Any]:
    """Add a user (maintainers add members and viewers; owners also owners)."""
    member = projects.add_member(principal, project_id, body.user, body.role, ip=client_ip(request))
    response.headers["Location"] = f"/api/v1/projects/{project_id}/members/{member['user_id']}"
    return member


@router.patch("/{project_id}/members/{user}", response_model=Member, responses=errors(403, 404, 409))
def change_role(
    project_id: ProjectId,
    user: UserRef,
    body: MemberRole,
    principal: UserPrincipal,
    request: Request,
    projects: ProjectsDep,
) -> dict[str, Any]:
    """Change a member's role; the last owner cannot step down (409)."""
    return projects.change_role(principal, project_id, user, body.role, ip=client_ip(request))


@router.delete("/{project_id}/members/{user}", response_model=Ack, responses=errors(403, 404, 409))
def remove_member(
    project_id: ProjectId, user: UserRef, principal: UserPrincipal, request: Request, projects: ProjectsDep
) -> Ack:
    """Remove a member (or leave yourself). Their running jobs finish; they lose access to the outputs."""
    projects.remove_member(principal, project_id, user, ip=client_ip(request))
    return Ack(success=True, message="member removed")
