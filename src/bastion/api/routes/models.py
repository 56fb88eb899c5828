"""The model registry over HTTP: list, inspect, best version, and predict on rows the caller sends."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, CurrentPrincipal, ModelsDep, UserPrincipal, presented_credential
from bastion.api.idempotency import Idempotent
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, LimitQuery, Page
from bastion.api.reads import read
from bastion.api.routing import PrefixRouter
from bastion.api.scoping import ProjectQuery
from bastion.auth.principal import Principal
from bastion.context import Context
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
from bastion.projects.policy import Action

router = PrefixRouter(prefix="/api/v1/models", tags=["models"])
AccessCode = Annotated[str | None, Header(alias="X-Access-Code", max_length=1024)]


@router.get("", response_model=Page[ModelSummary], responses=errors(404))
async def list_models(
    principal: CurrentPrincipal,
    models: ModelsDep,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
    project: ProjectQuery = None,
) -> dict[str, Any]:
    """The registered models of your projects (or of one, ``?project=``), oldest first."""
    data, next_cursor = await read(models.db, models.list_for, principal, limit, cursor, project)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{model_id}", response_model=ModelDetail)
def get_model(model_id: str, principal: CurrentPrincipal, models: ModelsDep) -> dict[str, Any]:
    return models.get(principal, model_id)


@router.get("/{model_id}/best", response_model=BestVersion)
def best_version(
    model_id: str,
    principal: CurrentPrincipal,
    models: ModelsDep,
    metric: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    return models.best(principal, model_id, metric)


def quantize_measured(
    ctx: Context, principal: Principal, model_id: str, version: int | None, access_code: str | None
) -> dict[str, Any]:
    """Quantize a version and measure it on its lineage's held-out rows (the API and dashboard path)."""
    from bastion.catalog.model_versions import quantize_version
    from bastion.data.builtin import load_dataset

    ctx.services.models.check(principal, model_id, Action.WRITE)  # a new version: refused before any work
    view = ctx.services.models.version(principal, model_id, version)
    lineage = view.lineage
    source = lineage.get("dataset_source")
    if not source:
        if view.config.get("origin") != "federation":
            raise Invalid("this version has no dataset in its lineage to measure accuracy on")
        return quantize_version(
            ctx.services.models, principal, model_id, version, None, access_code=access_code
        )

    def build(frame: Any) -> Any:
        return load_dataset(
            str(source),
            target=lineage.get("target"),
            frame=frame,
            kaggle_path=ctx.settings.kaggle_alzheimer_path,
            seed=int(lineage.get("seed") or 0),
        )

    if source == "user_provided":
        from bastion.data.deid import training_exclusions
        from bastion.jobs.datasets import without_excluded

        catalog = ctx.services.datasets
        dataset_id = str(lineage.get("dataset_id"))
        exclude = training_exclusions(catalog.get(principal, dataset_id)["deidentification"])
        dataset = without_excluded(catalog.load_frame(principal, dataset_id), exclude, build)
    else:
        dataset = build(None)
    return quantize_version(
        ctx.services.models,
        principal,
        model_id,
        version,
        dataset,
        seed=int(lineage.get("seed") or 0),
        access_code=access_code,
    )


@router.post(
    "/{model_id}/quantize", status_code=201, response_model=QuantizeResult, responses=errors(409, 423)
)
async def quantize(
    model_id: str,
    principal: UserPrincipal,
    ctx: ContextDep,
    idem: Idempotent,
    response: Response,
    body: QuantizeRequest | None = None,
    access_code: AccessCode = None,
) -> Any:
    """A new int8 version; the report gives size and accuracy before and after on held-out rows.
    The body is optional: without one the latest version is quantized."""
    version = body.version if body is not None else None
    if (replay := idem.replay()) is not None:
        return replay

    def run() -> Any:
        result = QuantizeResult.model_validate(
            quantize_measured(ctx, principal, model_id, version, access_code)
        )
        location = f"/api/v1/models/{result.version.model_id}"
        return idem.created(response, result, location)

    return await run_in_threadpool(run)


@router.post("/{model_id}/predict", response_model=Prediction, responses=errors(423))
async def predict(
    model_id: str,
    body: PredictRequest,
    principal: CurrentPrincipal,
    models: ModelsDep,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        view, model = models.predictor(principal, model_id, body.version, access_code)
        out: dict[str, Any] = {
            "model_id": view.model_id,
            "version": view.version,
            "predictions": [p.item() if hasattr(p, "item") else p for p in model.predict(body.rows)],
        }
        if hasattr(model, "q_values"):  # a DQN policy: the action per state and every action's Q-value
            out["q_values"] = model.q_values(body.rows).round(6).tolist()
        if body.probabilities and model.classes is not None:
            out["classes"] = model.classes
            out["probabilities"] = model.predict_proba(body.rows).round(6).tolist()
        return out

    return await run_in_threadpool(run)


class AccessCodeBody(BaseModel):
    access_code: str = Field(min_length=1, max_length=1024, description="The new code")
    version: int | None = Field(None, ge=1, description="One version (default: every version)")


class ModelAccessCodeResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    versions: list[int]
    access_protected: bool


@router.put(
    "/{model_id}/access-code",
    response_model=ModelAccessCodeResult,
    responses=errors(403, 404, 422, 423),
)
async def set_access_code(
    model_id: str,
    body: AccessCodeBody,
    principal: UserPrincipal,
    models: ModelsDep,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    """Set a code (or change it: send the current one as ``X-Access-Code``). Owner only; audited;
    wrong current codes count towards the lockout."""
    return await run_in_threadpool(
        models.set_access_code,
        principal,
        model_id,
        body.version,
        current=access_code,
        new=body.access_code,
    )


@router.delete(
    "/{model_id}/access-code",
    response_model=ModelAccessCodeResult,
    responses=errors(403, 404, 422, 423),
)
async def remove_access_code(
    model_id: str,
    principal: UserPrincipal,
    models: ModelsDep,
    access_code: AccessCode = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Remove the code (the current one goes in ``X-Access-Code``)."""
    return await run_in_threadpool(
        models.set_access_code, principal, model_id, version, current=access_code, new=None
    )


class ModelDownload(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    success: bool
    encrypted_model: str
    job_id: str = Field(description="The id bound into the encryption: here the model version's id")
    scheme: str
    salt: str | None = None
    nonce: str | None = None
    public_key: str | None = None
    model_id: str
    version: int
    model_type: str
    model_format: str
    package_bytes: int


@router.get("/{model_id}/download", response_model=ModelDownload, responses=errors(403, 404, 409, 423))
async def download_version(
    model_id: str,
    principal: UserPrincipal,
    request: Request,
    models: ModelsDep,
    version: Annotated[int | None, Query(ge=1, description="Default: the latest")] = None,
    scheme: Annotated[
        Literal["api-key", "x25519"] | None, Query(description="Default: x25519 if registered")
    ] = None,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    """A version (quantized ones too) encrypted for the caller alone, exactly like a job's download;
    ``bastion models download`` decrypts it and writes the model next to its JSON config."""
    api_key = presented_credential(request) if principal.via == "api_key" else None
    return await run_in_threadpool(
        models.download,
        principal,
        model_id,
        version,
        access_code=access_code,
        api_key=api_key,
        scheme=scheme,
    )
