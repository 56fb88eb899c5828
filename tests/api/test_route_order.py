"""The site routes are matched first (bastion.api.app.ROUTERS); that is safe only while no other route
matches one of their paths, which this checks for every site route and method."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute
from starlette.routing import Match

from bastion.api.app import ROUTERS
from bastion.api.routes import federation_site


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_no_other_route_matches_a_site_path() -> None:
    assert ROUTERS[0] is federation_site.router
    site_routes = [r for r in federation_site.router.routes if isinstance(r, APIRoute)]
    assert len(site_routes) >= 4
    others = [r for router in ROUTERS[1:] for r in router.routes if isinstance(r, APIRoute)]
    for site_route in site_routes:
        for method in site_route.methods:
            scope = {"type": "http", "path": _concrete(site_route.path), "method": method, "root_path": ""}
            assert site_route.matches(scope)[0] == Match.FULL
            clashes = [o.path for o in others if o.matches(scope)[0] == Match.FULL]
            assert not clashes, (site_route.path, method, clashes)
