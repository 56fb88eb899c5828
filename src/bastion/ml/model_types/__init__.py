"""The model types a job may name, their parameter schemas, supported tasks and cost estimates.

One module per model type in this package (``dqn`` lives in ``bastion.ml.rl``); each declares
``Params``, ``TASKS``, ``estimate_seconds`` and ``fit``. Trained models are *model versions*
(``bastion.catalog.model_versions``); their rows are in ``bastion.store.tables``.

Cheap to import: model modules import only pydantic and numpy at top level, so the API can list
model types and validate parameters at request time without loading torch or scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from bastion.errors import Invalid

_MODULES = {
    "alzheimer_classifier": "bastion.ml.model_types.alzheimer_classifier",
    "adaptive_neural_net": "bastion.ml.model_types.adaptive_neural_net",
    "tabular_regressor": "bastion.ml.model_types.tabular_regressor",
    "he_mlp": "bastion.ml.model_types.he_mlp",
    "dqn": "bastion.ml.rl.dqn",
}


@dataclass(frozen=True)
class ModelType:
    name: str
    description: str
    tasks: frozenset[str]
    params: type[BaseModel]
    module: ModuleType

    def params_schema(self) -> dict[str, Any]:
        """JSON schema of the parameters (bounds, defaults, choices) for docs and the dashboard."""
        return self.params.model_json_schema()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tasks": sorted(self.tasks),
            "params": self.params_schema(),
        }


def _load(name: str) -> ModelType:
    module = importlib.import_module(_MODULES[name])
    return ModelType(
        name=name,
        description=module.DESCRIPTION,
        tasks=frozenset(module.TASKS),
        params=module.Params,
        module=module,
    )


def model_type_names() -> list[str]:
    return list(_MODULES)


def get_model_type(name: str) -> ModelType:
    if not isinstance(name, str) or name not in _MODULES:
        raise Invalid(
            f"unknown model type {name!r}; valid choices: {', '.join(_MODULES)}",
            choices=list(_MODULES),
        )
    return _load(name)


def list_model_types() -> list[dict[str, Any]]:
    return [get_model_type(n).describe() for n in _MODULES]


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) params block at ``path``, e.g. ``("dp",)``; top level if unknown."""
    current = model
    for part in path:
        info = current.model_fields.get(str(part))
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return sorted(model.model_fields)
        current = annotation
    return sorted(current.model_fields)


def _describe_error(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "params"
    if err.get("type") == "extra_forbidden":
        fields = _fields_at(model, tuple(err.get("loc", ()))[:-1])
        return f"unknown parameter {loc!r}; valid parameters: {', '.join(fields)}"
    return f"parameter {loc!r}: {err.get('msg', 'invalid value')}"


def validate_params(model_type: str, params: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    """Parse ``params`` into the model type's schema, or raise Invalid saying what is wrong."""
    spec = get_model_type(model_type)
    if isinstance(params, spec.params):
        return params
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise Invalid(f"params for {model_type} must be an object")
    fields = sorted(spec.params.model_fields)
    try:
        return spec.params.model_validate(dict(params))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        messages = [_describe_error(e, spec.params) for e in errors]
        raise Invalid(
            f"invalid params for {model_type}: " + "; ".join(messages),
            errors=[{"loc": [str(p) for p in e["loc"]], "type": e["type"], "msg": e["msg"]} for e in errors],
            valid_params=fields,
        ) from None


def check_task(model_type: str, task: str, dataset_name: str | None = None) -> None:
    """Refuse pairing a model type with a dataset whose task it cannot learn."""
    spec = get_model_type(model_type)
    if task not in spec.tasks:
        what = f"dataset {dataset_name!r}" if dataset_name else "the dataset"
        raise Invalid(
            f"model type {model_type!r} supports {' and '.join(sorted(spec.tasks))} datasets, "
            f"but {what} is a {task} task",
            supported_tasks=sorted(spec.tasks),
        )


def estimate_seconds(
    model_type: str, n_samples: int, n_features: int, params: Mapping[str, Any] | BaseModel | None = None
) -> float:
    """A rough CPU-seconds figure for training, for cost estimates before a job starts."""
    if n_samples < 1 or n_features < 1:
        raise Invalid("n_samples and n_features must be positive")
    spec = get_model_type(model_type)
    parsed = validate_params(model_type, params)
    return cast(float, spec.module.estimate_seconds(n_samples, n_features, parsed))
