"""The dashboard: server-rendered pages over the same services and role checks as the API.

``install(app)`` mounts the page routers and the static files (pinned, vendored assets; see
``scripts/vendor_web_assets.py``). A feature adds its pages by appending a router to
``pages.PAGE_ROUTERS`` and a ``NavItem`` to ``render.NAV`` (fine-tuning will, once it exists).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE_DIR = Path(__file__).parent / "templates"


def install(app: FastAPI) -> None:
    from bastion.web.pages import PAGE_ROUTERS

    for router in PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
