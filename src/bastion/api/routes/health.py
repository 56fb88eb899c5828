"""Liveness and component health, in seeds/000's shape (no authentication)."""

from __future__ import annotations

from typing import Literal

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from bastion import __version__
from bastion.api.deps import ContextDep
from bastion.api.routing import PrefixRouter
from bastion.clock import aware_utcnow

router = PrefixRouter(tags=["health"])
ComponentState = Literal["operational", "unavailable"]


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    timestamp: str
    version: str
    components: dict[str, ComponentState]


@router.get(
    "/api/v1/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "Unhealthy: the same body, status unhealthy"}},
)
def health(ctx: ContextDep, response: Response) -> Health:
    components: dict[str, ComponentState] = {"api": "operational"}
    for name, check in ctx.health_checks.items():
        try:
            ok = check()
        except Exception:
            ok = False
        components[name] = "operational" if ok else "unavailable"
    components.setdefault("training_manager", "unavailable")
    essential = ("api", "database", "security")
    healthy = all(components.get(c) == "operational" for c in essential)
    if not healthy:
        response.status_code = 503
    return Health(
        status="healthy" if healthy else "unhealthy",
        timestamp=aware_utcnow().isoformat(timespec="seconds"),
        version=__version__,
        components=components,
    )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
