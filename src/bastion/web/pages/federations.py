"""Federations: the coordinator's list, the create form (privacy settings with epsilon explained), and
a federation's live page: sites, round timeline, per-round charts, secure-aggregation stage and site
enrolment (the one-time token shown once, with the command to run at the site)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from bastion.api.deps import FederationsDep, client_ip
from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.errors import BastionError, Invalid
from bastion.federation.server.config import FederationCreate
from bastion.federation.server.states import LIVE
from bastion.web.listing import gather
from bastion.web.pages.base import Ctx, Session, Writer, form_fields, page_router, redirect, threaded
from bastion.web.render import page

router = page_router(prefix="/federations")
DEFAULT_MODEL = '{"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [16]}'
SSE_POLL_SECONDS = 1.0
SSE_KEEPALIVE_POLLS = 15
SKIP_SERIES = ("num_samples", "dp_delta")


@router.get("")
def federation_list(request: Request, federations: FederationsDep, session: Session) -> Response:
    return page(
        request,
        "federations.html",
        federations=gather(lambda n, c: federations.list_for(session.principal, n, c))[::-1],
    )


# -- create ---------------------------------------------------------------------------------------
def _strategies() -> list[str]:
    from bastion.federation.strategies import STRATEGIES

    return sorted(STRATEGIES)


def _number(form: dict[str, str], name: str, kind: type = float) -> Any:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise Invalid(f"{name.replace('_', ' ')}: {raw[:30]!r} is not a number") from None


def config_of(form: dict[str, str]) -> FederationCreate:
    """The create form as the API's own request body (validated by the same model)."""
    try:
        model = json.loads(form.get("model") or DEFAULT_MODEL)
    except ValueError:
        raise Invalid("the model spec must be JSON", code="invalid_model") from None
    body: dict[str, Any] = {
        "name": (form.get("name") or "").strip(),
        "model": model,
        "strategy": form.get("strategy") or "fedavg",
        "training": {
            k: v
            for k, v in {
                "epochs": _number(form, "epochs", int),
                "lr": _number(form, "lr"),
                "batch_size": _number(form, "batch_size", int),
            }.items()
            if v is not None
        },
    }
    for name, kind in (
        ("rounds", int),
        ("min_clients", int),
        ("target_clients", int),
        ("round_timeout_s", float),
    ):
        value = _number(form, name, kind)
        if value is not None:
            body[name] = value
    if form.get("server_dataset"):
        body["evaluation"] = {"server_dataset": form["server_dataset"]}
    privacy: dict[str, Any] = {}
    if form.get("secure_aggregation"):
        privacy["secure_aggregation"] = {}
    if form.get("dp"):
        dp = {
            "noise_multiplier": _number(form, "noise_multiplier"),
            "clip_norm": _number(form, "clip_norm"),
            "mode": form.get("dp_mode") or "central",
            "delta": _number(form, "delta"),
            "budget_epsilon": _number(form, "budget_epsilon"),
        }
        privacy["dp"] = {k: v for k, v in dp.items() if v is not None}
    if privacy:
        body["privacy"] = privacy
    try:
        return FederationCreate.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Invalid(f"{where}: {first.get('msg', 'invalid')}", code="validation_error") from None


def _create_context(form: dict[str, str]) -> dict[str, Any]:
    from bastion.data.builtin import FEDERATED_BUILTINS

    return {
        "form": form,
        "strategies": _strategies(),
        "default_model": DEFAULT_MODEL,
        "server_datasets": [f"builtin:{s}" for s in FEDERATED_BUILTINS],
    }


@router.get("/new")
def create_form(request: Request, session: Session) -> Response:
    return page(request, "federation_new.html", error="", **_create_context({}))


@router.post("")
async def create(request: Request, federations: FederationsDep, session: Writer) -> Response:
    form = await form_fields(request)
    try:
        cfg = config_of(form)
        fed = await threaded(federations.create, session.principal, cfg, client_ip(request))
    except BastionError as exc:
        return page(
            request, "federation_new.html", exc.status_code, error=exc.message, **_create_context(form)
        )
    return redirect(f"/federations/{fed['id']}")


# -- one federation -------------------------------------------------------------------------------
def chart_series(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Round-indexed numeric metrics, split into quality (accuracy, loss) and privacy (epsilon)."""
    done = [r for r in history if r.get("metrics")]
    keys = sorted(
        {
            k
            for r in done
            for k, v in r["metrics"].items()
            if isinstance(v, int | float) and not isinstance(v, bool) and not k.endswith(SKIP_SERIES)
        }
    )
    x = [r["round"] for r in done]

    def pick(names: list[str]) -> dict[str, Any]:
        return {"x": x, "series": {k: [r["metrics"].get(k) for r in done] for k in names}}

    return {
        "accuracy": pick([k for k in keys if "accuracy" in k]),
        "loss": pick([k for k in keys if "loss" in k]),
        "epsilon": pick([k for k in keys if "epsilon" in k]),
    }


def _federation_context(ctx: Context, principal: Principal, federation_id: str) -> dict[str, Any]:
    svc = ctx.services.federations
    fed = svc.get(principal, federation_id)
    status = svc.status(principal, federation_id)
    return {"fed": fed, "status": status, "charts": chart_series(fed["history"])}


@router.get("/{federation_id}")
def federation_page(request: Request, ctx: Ctx, session: Session, federation_id: str) -> Response:
    return page(
        request,
        "federation.html",
        enrolled=None,
        **_federation_context(ctx, session.principal, federation_id),
    )


@router.get("/{federation_id}/panel")
def federation_panel(request: Request, ctx: Ctx, session: Session, federation_id: str) -> Response:
    context = _federation_context(ctx, session.principal, federation_id)
    return page(request, "partials/federation_panel.html", **context)


def _signature(ctx: Context, principal: Principal, federation_id: str) -> str:
    s = ctx.services.federations.status(principal, federation_id)
    secure = s.get("secure_aggregation") or {}
    return json.dumps(
        [
            s["state"],
            s["round"],
            s["round_state"],
            s["pending_updates"],
            s["clients_online"],
            s["completed_rounds"],
            secure.get("stage"),
            s["participants"],
        ]
    )


@router.get("/{federation_id}/events")
def federation_events(request: Request, ctx: Ctx, session: Session, federation_id: str) -> StreamingResponse:
    """SSE: a ``changed`` event whenever the federation's round, stage or site count moves; the page
    then reloads its panel (one small status query per second per open page)."""
    principal = session.principal
    first = _signature(ctx, principal, federation_id)

    async def stream() -> AsyncIterator[str]:
        last, quiet = first, 0
        yield f"event: changed\ndata: {last}\n\n"
        while not await request.is_disconnected():
            await asyncio.sleep(SSE_POLL_SECONDS)
            try:
                now = await threaded(_signature, ctx, principal, federation_id)
            except BastionError:
                yield "event: end\ndata: {}\n\n"
                return
            if now != last:
                last, quiet = now, 0
                yield f"event: changed\ndata: {now}\n\n"
                if json.loads(now)[0] not in LIVE:
                    yield "event: end\ndata: {}\n\n"
                    return
            else:
                quiet += 1
                if quiet >= SSE_KEEPALIVE_POLLS:
                    quiet = 0
                    yield ": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"},
    )


@router.post("/{federation_id}/sites")
async def enroll(
    request: Request, ctx: Ctx, federations: FederationsDep, session: Writer, federation_id: str
) -> Response:
    """Enrol a site: the token is in this response only (it is stored as a hash)."""
    from bastion.contract.federations import EnrollRequest

    form = await form_fields(request)
    try:
        name = EnrollRequest(name=(form.get("site_name") or "").strip()).name
    except ValidationError:
        raise Invalid("site names are 1-100 letters, digits, spaces, dots, dashes or underscores") from None
    enrolled = await threaded(federations.enroll, session.principal, federation_id, name, client_ip(request))
    context = await threaded(_federation_context, ctx, session.principal, federation_id)
    server_url = f"{request.url.scheme}://{request.url.netloc}"
    response = page(request, "federation.html", 201, enrolled=enrolled, server_url=server_url, **context)
    return response
