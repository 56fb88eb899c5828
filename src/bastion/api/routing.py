"""``PrefixRouter``: an ``APIRouter`` that turns away paths outside its prefix before trying routes.

FastAPI (0.16x) keeps included routers as a list and asks each in turn whether it matches, and each
router tries every one of its routes' regexes: a request to a router late in the list paid for ~50
failed matches. A router whose routes all live under one prefix can answer "no" from the prefix's
static part alone (the text before its first ``{param}``). Nothing else changes: a path under the
prefix is matched exactly as before, and where FastAPI flattens included routes this method is
simply not called.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


class PrefixRouter(APIRouter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._static_prefix = self.prefix.split("{", 1)[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self._static_prefix and not _route_path(scope).startswith(self._static_prefix):
            return Match.NONE, {}
        return super().matches(scope)


def _route_path(scope: Scope) -> str:
    """The path the routes see: ``path`` without a ``root_path`` it starts with (as Starlette does)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def warm(app: Any) -> int:
    """Build FastAPI's per-route request state now rather than on each router's first request.

    FastAPI (0.16x) prepares an included router's routes (dependency trees, parameter fields) the
    first time a request reaches that router: ~50 ms for a dozen routes, paid by whoever calls each
    router first after a start (``POST /federations``: 205 ms first, 63 ms after). ``bastion serve``
    runs this on a background thread as it starts listening (FastAPI guards that state with a lock,
    so a request racing it waits as it would have anyway); where FastAPI has no such lazy state it
    does nothing. Returns the number of routes prepared.
    """
    prepared = 0
    for route in app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            prepared += sum(1 for _ in contexts())
    return prepared
