"""Datasets and the model registry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.contract.common import STRICT, UtcDateTime


class DeidAction(BaseModel):
    model_config = ConfigDict(extra="allow")

    column: str
    action: str
    detected_kind: str | None = None


class Dataset(BaseModel):
    id: str
    project_id: str | None = Field(None, description="The project that owns it (see /api/v1/projects)")
    name: str
    format: str
    size_bytes: int
    rows: int
    columns: int
    created_at: UtcDateTime
    access_protected: bool = Field(False, description="Reading it needs its access code (X-Access-Code)")
    schema_: list[dict[str, Any]] = Field(alias="schema")
    deidentification: list[DeidAction]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class DatasetDeleted(BaseModel):
    success: Literal[True] = True
    message: str
    id: str
    deleted_at: UtcDateTime


class ModelSummary(BaseModel):
    id: str
    project_id: str | None = Field(None, description="The project that owns it (see /api/v1/projects)")
    name: str
    created_at: UtcDateTime
    primary_metric: str | None
    versions: int
    latest_version: int | None
    best_version: int | None


class ModelVersion(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    model_id: str
    version: int
    model_format: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    input_schema: dict[str, Any]
    size_bytes: int
    access_protected: bool
    created_at: UtcDateTime


class ModelDetail(ModelSummary):
    history: list[ModelVersion]


class BestVersion(ModelVersion):
    name: str
    metric: str | None


class QuantizeRequest(BaseModel):
    model_config = STRICT

    version: int | None = Field(None, ge=1, le=2**31 - 1)


class QuantizeResult(BaseModel):
    version: ModelVersion
    report: dict[str, Any]


class PredictRequest(BaseModel):
    model_config = STRICT

    rows: list[dict[str, Any]] = Field(min_length=1, max_length=10000)
    version: int | None = Field(None, ge=1, le=2**31 - 1)
    probabilities: bool = False


class Prediction(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    version: int
    predictions: list[Any]
    classes: list[Any] | None = None
    probabilities: list[list[float]] | None = None
    q_values: list[list[float]] | None = Field(
        None, description="A DQN policy only: every action's Q-value per row (the prediction is the argmax)"
    )
