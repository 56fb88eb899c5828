"""``PrefixRouter``: routers turn away paths outside their prefix; every route still answers its own paths."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Match, compile_path
from starlette.types import Scope

from bastion.api.app import ROUTERS
from bastion.api.routing import PrefixRouter
from tests.conftest import Caller


def _sample(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "abc1", path)


def test_no_path_is_claimed_by_two_routers() -> None:
    """Which router is asked first cannot change which route answers: no route of one router matches
    a path of another's (same method), so the prefix check only skips routers that had no match."""
    routes = [
        (i, r.path, getattr(r, "methods", None) or set(), compile_path(r.path)[0])
        for i, router in enumerate(ROUTERS)
        for r in router.routes
    ]
    clashes = [
        (p, q) for i, p, m, _ in routes for j, q, n, rx in routes if i != j and m & n and rx.match(_sample(p))
    ]
    assert clashes == []


def test_prefix_router_declines_outside_its_prefix_and_matches_inside() -> None:
    router = PrefixRouter(prefix="/api/v1/things/{thing_id}/parts")

    @router.get("/{part}")
    async def part(thing_id: str, part: str) -> dict[str, str]:
        return {"thing": thing_id, "part": part}

    other = PrefixRouter(prefix="/api/v1/other")

    @other.get("/{name}")
    async def named(name: str) -> dict[str, str]:
        return {"name": name}

    app = FastAPI()
    app.include_router(router)
    app.include_router(other)
    tried: list[str] = []
    route = router.routes[0]
    original = route.matches

    def counting(scope: Scope) -> tuple[Match, Scope]:
        tried.append(scope["path"])
        return original(scope)

    route.matches = counting  # type: ignore[method-assign]
    client = TestClient(app)
    assert client.get("/api/v1/other/x").json() == {"name": "x"}
    assert tried == []  # the first router was never searched for a path outside its prefix
    assert client.get("/api/v1/things/t1/parts/p2").json() == {"thing": "t1", "part": "p2"}
    assert tried  # inside it, its routes are tried as before
    assert client.post("/api/v1/other/x").status_code == 405  # a wrong method is still a 405
    assert client.get("/api/v1/nothing").status_code == 404


def test_every_router_still_answers(client: TestClient, alice: Caller) -> None:
    """One request into each prefixed router: an answer from the route (not the 404 of no route)."""
    assert client.get("/api/v1/datasets", headers=alice.headers).status_code == 200
    assert client.get("/api/v1/projects/domains", headers=alice.headers).status_code == 200
    site = client.get("/api/v1/federations/f1/site/info")  # a parameter inside the prefix
    assert site.status_code == 401
    analytics = client.get("/api/v1/projects/p1/analytics/contributions", headers=alice.headers)
    assert analytics.status_code == 404 and analytics.json()["error"]["code"] == "project_not_found"
