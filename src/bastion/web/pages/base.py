"""What every page route shares: the route class (sign-in redirects, errors as pages, cookies), the
session dependencies and the write gate (CSRF + the API's role check)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, ParamSpec, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response, StreamingResponse

from bastion.api.deps import enforce_role
from bastion.auth.roles import Role
from bastion.context import Context
from bastion.errors import BastionError
from bastion.web import session as web
from bastion.web.render import page

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def safe_next(target: str | None) -> str:
    """Only a local path may follow a sign-in (no open redirect to another site)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def login_redirect(request: Request, reason: str) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target, safe='')}" + (f"&reason={quote(reason)}" if reason else "")
    if "hx-request" in request.headers:
        return Response(status_code=204, headers={"HX-Redirect": location})
    if request.headers.get("accept", "").startswith("text/event-stream"):
        return Response(status_code=401)
    return RedirectResponse(location, status_code=303)


class WebRoute(APIRoute):
    """A page route: no session sends the person to sign in; a service error becomes an error page."""

    def get_route_handler(self) -> Handler:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except web.LoginRequired as exc:
                response = login_redirect(request, exc.reason)
            except BastionError as exc:
                response = error_page(request, exc)
            web.apply_cookies(request, response)
            return response

        return handler


def error_page(request: Request, exc: BastionError) -> Response:
    headers = {}
    retry = getattr(exc, "retry_after", None)
    if retry:
        headers["Retry-After"] = str(retry)
    template = "partials/error.html" if "hx-request" in request.headers else "error.html"
    response = page(request, template, exc.status_code, error=exc)
    response.headers.update(headers)
    return response


def page_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=WebRoute, include_in_schema=False, **kwargs)


def get_ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(get_ctx)]


def current_session(request: Request) -> web.WebSession:
    """Runs in the threadpool (a sync dependency): verifying a session reads the database."""
    session = web.load(request, get_ctx(request))
    request.state.web_session = session
    return session


Session = Annotated[web.WebSession, Depends(current_session)]


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted form's text fields (files are read by the routes that take them)."""
    form = await request.form(max_files=1, max_fields=200)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def uploaded(form: Any, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) else None


async def _write_gate(request: Request, session: web.WebSession, minimum: Role) -> web.WebSession:
    """CSRF first (a forged request learns nothing), then the API's own role check (audited)."""
    web.check_origin(request)
    submitted = None
    if web.CSRF_HEADER not in request.headers:
        submitted = (await form_fields(request)).get(web.CSRF_FIELD)
    web.check_csrf(request, session, submitted)
    await enforce_role(request, session.principal, get_ctx(request), minimum)
    return session


async def writer(request: Request, session: Session) -> web.WebSession:
    return await _write_gate(request, session, Role.USER)


async def admin_writer(request: Request, session: Session) -> web.WebSession:
    return await _write_gate(request, session, Role.ADMIN)


async def self_writer(request: Request, session: Session) -> web.WebSession:
    """Writes on one's own account (keys, sign-out): any role, CSRF still required."""
    return await _write_gate(request, session, Role.VIEWER)


Writer = Annotated[web.WebSession, Depends(writer)]
AdminWriter = Annotated[web.WebSession, Depends(admin_writer)]
SelfWriter = Annotated[web.WebSession, Depends(self_writer)]


async def admin_reader(request: Request, session: Session) -> web.WebSession:
    await enforce_role(request, session.principal, get_ctx(request), Role.ADMIN)
    return session


AdminReader = Annotated[web.WebSession, Depends(admin_reader)]


def redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303)


P = ParamSpec("P")
T = TypeVar("T")


async def threaded(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


def last_event_id(request: Request) -> int:
    """Where a reconnecting EventSource resumes (0: from the start)."""
    last = request.headers.get("last-event-id", "")
    return int(last) if last.isdigit() else 0


def sse(stream: Any) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"},
    )
