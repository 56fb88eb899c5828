"""Projects: the ones you are in, and per project its members and analytics (contributions, resource
use, models over time, federation participation), from the same services as the API."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from bastion.api.deps import ProjectsDep
from bastion.web.listing import gather
from bastion.web.pages.base import Session, page_router, threaded
from bastion.web.render import page

router = page_router(prefix="/projects")
VIEWS = ("contributions", "resources", "models", "training", "federations")


@router.get("")
def project_list(request: Request, projects: ProjectsDep, session: Session) -> Response:
    return page(
        request,
        "projects.html",
        projects=gather(lambda n, c: projects.list_for(session.principal, n, c)),
    )


@router.get("/{project_id}")
async def project_detail(
    request: Request, projects: ProjectsDep, session: Session, project_id: str
) -> Response:
    """Members and the five analytics views; a stranger gets the 404 page, as from the API."""
    svc = projects
    project = await threaded(svc.get, session.principal, project_id[:36])
    views: dict[str, Any] = {}
    for view in VIEWS:
        views[view] = await threaded(svc.analytics, session.principal, project["id"], view)
    return page(request, "project.html", project=project, **views)
