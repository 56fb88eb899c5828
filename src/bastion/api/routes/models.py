"""The model registry over HTTP: list, inspect, best version, and predict on rows the caller sends."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, CurrentPrincipal, UserPrincipal
from bastion.api.idempotency import Idempotent
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, LimitQuery, Page
from bastion.catalog.models import ModelRegistry
from bastion.contract.catalog import (
    BestVersion,
    ModelDetail,
    ModelSummary,
    Prediction,
    PredictRequest,
    QuantizeRequest,
    QuantizeResult,
)
from bastion.errors import Invalid

router = APIRouter(prefix="/api/v1/models", tags=["models"])
AccessCode = Annotated[str | None, Header(alias="X-Access-Code", max_length=1024)]


def registry(ctx: ContextDep) -> ModelRegistry:
    svc: ModelRegistry = ctx.services["models"]
    return svc


@router.get("", response_model=Page[ModelSummary])
def list_models(
    principal: CurrentPrincipal, ctx: ContextDep, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> dict[str, Any]:
    """Your registered models, oldest first."""
    data, next_cursor = registry(ctx).list_for(principal, limit, cursor)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{model_id}", response_model=ModelDetail)
def get_model(model_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> dict[str, Any]:
    return registry(ctx).get(principal, model_id)


@router.get("/{model_id}/best", response_model=BestVersion)
def best_version(
    model_id: str,
    principal: CurrentPrincipal,
    ctx: ContextDep,
    metric: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    return registry(ctx).best(principal, model_id, metric)


@router.post(
    "/{model_id}/quantize", status_code=201, response_model=QuantizeResult, responses=errors(409, 423)
)
async def quantize(
    model_id: str,
    body: QuantizeRequest,
    principal: UserPrincipal,
    ctx: ContextDep,
    idem: Idempotent,
    response: Response,
    access_code: AccessCode = None,
) -> Any:
    """A new int8 version; the report gives size and accuracy before and after on held-out rows."""
    if (replay := idem.replay()) is not None:
        return replay

    def run() -> QuantizeResult:
        from bastion.catalog.models import quantize_version
        from bastion.data.builtin import load_dataset

        view = registry(ctx).version(principal, model_id, body.version)
        lineage = view.lineage
        source = lineage.get("dataset_source")
        if not source:
            raise Invalid("this version has no dataset in its lineage to measure accuracy on")
        frame = None
        if source == "user_provided":
            frame = ctx.services["datasets"].load_frame(principal, str(lineage.get("dataset_id")))
        dataset = load_dataset(
            str(source),
            target=lineage.get("target"),
            frame=frame,
            kaggle_path=ctx.settings.kaggle_alzheimer_path,
            seed=int(lineage.get("seed") or 0),
        )
        result = QuantizeResult.model_validate(
            quantize_version(
                registry(ctx),
                principal,
                model_id,
                body.version,
                dataset,
                seed=int(lineage.get("seed") or 0),
                access_code=access_code,
            )
        )
        location = f"/api/v1/models/{result.version.model_id}"
        return idem.created(response, result, location)

    return await run_in_threadpool(run)


@router.post("/{model_id}/predict", response_model=Prediction, responses=errors(423))
async def predict(
    model_id: str,
    body: PredictRequest,
    principal: CurrentPrincipal,
    ctx: ContextDep,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        view, model = registry(ctx).predictor(principal, model_id, body.version, access_code)
        out: dict[str, Any] = {
            "model_id": view.model_id,
            "version": view.version,
            "predictions": [p.item() if hasattr(p, "item") else p for p in model.predict(body.rows)],
        }
        if body.probabilities and model.classes is not None:
            out["classes"] = model.classes
            out["probabilities"] = model.predict_proba(body.rows).round(6).tolist()
        return out

    return await run_in_threadpool(run)
