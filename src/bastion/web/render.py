"""Templates: one Jinja2 environment (autoescaped: user text is always shown as text), the navigation
and the few filters the pages share."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.responses import Response

from bastion.auth.roles import Role
from bastion.web import TEMPLATE_DIR

if TYPE_CHECKING:  # Jinja2 loads with the first page rendered, not with every API server
    from fastapi.templating import Jinja2Templates


@dataclass(frozen=True)
class NavItem:
    """One entry of the side navigation; ``minimum`` hides it from lower roles."""

    label: str
    href: str
    minimum: Role = Role.VIEWER


# The extension point for new sections (fine-tuning appends its entry here).
NAV: list[NavItem] = [
    NavItem("Overview", "/"),
    NavItem("Jobs", "/jobs"),
    NavItem("Federations", "/federations"),
    NavItem("Datasets", "/datasets", Role.USER),
    NavItem("Models", "/models"),
    NavItem("Fine-tuning", "/fine-tuning", Role.USER),
    NavItem("Projects", "/projects", Role.USER),
    NavItem("Admin", "/admin/users", Role.ADMIN),
    NavItem("Account", "/account"),
]


def _when(value: Any) -> str:
    """ISO text or a datetime as 'YYYY-MM-DD HH:MM:SS' UTC; empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        tail = value[19:]
        utc = value.endswith(("+00:00", "Z")) or ("+" not in tail and "-" not in tail)
        if len(value) >= 19 and value[10] == "T" and utc:
            return f"{value[:10]} {value[11:19]}"  # already UTC (every stored time is): no parsing
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: Any) -> str:
    try:
        return f"{float(value) * 100:.0f}%"
    except (TypeError, ValueError):
        return ""


def _bytes(value: Any) -> str:
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str, sort_keys=True)


@functools.cache
def templates() -> Jinja2Templates:
    from fastapi.templating import Jinja2Templates

    t = Jinja2Templates(directory=str(TEMPLATE_DIR))
    t.env.autoescape = True
    t.env.filters.update(when=_when, num=_num, pct=_pct, size=_bytes, compact=_compact_json)
    return t


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """Render ``name`` with the signed-in person (if any), their navigation and CSRF token."""
    session = getattr(request.state, "web_session", None)
    principal = session.principal if session else None
    context.update(
        request=request,
        me=principal,
        csrf=session.csrf if session else "",
        nav=[n for n in NAV if principal is not None and principal.has(n.minimum)],
        can_write=principal is not None and principal.has(Role.USER),
        is_admin=principal is not None and principal.has(Role.ADMIN),
        path=request.url.path,
    )
    response = templates().TemplateResponse(request, name, context, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    return response
