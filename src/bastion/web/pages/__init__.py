"""Page routers, in the order they are mounted (the extension point for new sections)."""

from __future__ import annotations

from fastapi import APIRouter

from bastion.web.pages import (
    account,
    admin,
    datasets,
    federations,
    fine_tuning,
    jobs,
    models,
    overview,
    projects,
    signin,
)

PAGE_ROUTERS: list[APIRouter] = [
    signin.router,
    overview.router,
    jobs.router,
    federations.router,
    datasets.router,
    models.router,
    fine_tuning.router,
    projects.router,
    admin.router,
    account.router,
]
