"""The OpenAPI document, made true: security schemes, and the error body on every status a route sends.

FastAPI documents success bodies and its own 422; what else a route can answer follows from how it is
built, so it is derived here from each route's dependencies instead of being typed by hand per route:

- authenticated (``current_principal`` in its dependencies): the user schemes, 401, 423 (the
  source address is locked out after failures) and 429;
- a role gate (``require``): 403;
- a path parameter: 404 (a missing or foreign object look alike);
- any parameter or body: 422;
- a request body: 413 (the gateway's body limit);
- a site route (``site_auth``): the site-token scheme, 401 and 429.

A route adds what only it can answer with ``responses=errors(409, 423)``. Every error status carries
:class:`~bastion.api.problems.Problem` as ``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from bastion.api.problems import PROBLEM_JSON, Problem

USER_SECURITY: list[dict[str, list[str]]] = [{"ApiKeyHeader": []}, {"BearerAuth": []}, {"ApiKeyQuery": []}]
SITE_SECURITY: list[dict[str, list[str]]] = [{"SiteToken": []}]
SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "bst_... key"},
    "BearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from /auth/login, or an API key",
    },
    "ApiKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": "Accepted for older clients; redacted from every log",
    },
    "SiteToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bsp_",
        "description": "A federation participant's token (site routes only)",
    },
}
# Markers the dependencies in bastion.api.deps set on their callables.
USER_AUTH = "__bastion_user_auth__"
SITE_AUTH = "__bastion_site_auth__"
ROLE_GATE = "__bastion_role_gate__"


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the error statuses only this route can answer (the rest are derived)."""
    return {status: {"model": Problem, "description": _phrase(status)} for status in statuses}


def mark(attribute: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def tag(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, attribute, True)
        return fn

    return tag


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route with its effective (prefixed) path, through included routers."""
    for context in routing.iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def derived_statuses(route: Any, has_body: bool) -> tuple[set[int], list[dict[str, list[str]]]]:
    """The error statuses a route can answer by construction, and its security requirement."""
    statuses: set[int] = set()
    security: list[dict[str, list[str]]] = []
    params = False
    for dep in _walk(route.dependant):
        call = dep.call
        if getattr(call, USER_AUTH, False):
            statuses |= {401, 423, 429}
            security = USER_SECURITY
        if getattr(call, SITE_AUTH, False):
            statuses |= {401, 429}
            security = SITE_SECURITY
        if getattr(call, ROLE_GATE, False):
            statuses.add(403)
        if dep.path_params:
            statuses.add(404)
        if dep.path_params or dep.query_params or dep.header_params or dep.body_params:
            params = True
    if has_body:
        statuses |= {413, 422}
    if params:
        statuses.add(422)
    return statuses, security


def _problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or _phrase(status),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schemas["Problem"].pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            op = schema["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            statuses, security = derived_statuses(route, "requestBody" in op)
            op["security"] = security
            responses: dict[str, Any] = op.setdefault("responses", {})
            for code, response in list(responses.items()):
                if code.isdigit() and int(code) >= 400 and int(code) not in (503,):
                    statuses.add(int(code))
                    responses[code] = _problem_response(int(code), response.get("description"))
            for status in sorted(statuses):
                responses.setdefault(str(status), _problem_response(status))
                if responses[str(status)].get("content", {}).get("application/json"):
                    responses[str(status)] = _problem_response(status)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
