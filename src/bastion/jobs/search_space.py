"""A search job's spec: the space over a model type's params, and the limits of the search.

::

    {"space": {"C": {"type": "float", "low": 0.001, "high": 100, "log": true},
               "n_estimators": {"type": "int", "low": 10, "high": 300},
               "estimator": {"type": "categorical", "choices": ["random_forest", "gradient_boosting"]}},
     "trials": 20, "parallel": 2, "cv": 5, "time_budget_seconds": 600, "include_defaults": true}

Checked at submit: every name is a parameter of the model type, every bound and choice is a value
the type accepts (so no trial can fail on validation), the limits are in range.
"""

from __future__ import annotations

from typing import Any

from bastion.errors import Invalid

MAX_TRIALS = 500
MAX_PARALLEL = 16
MAX_PARAMS = 32
MAX_CHOICES = 64
_FIXED = ("test_size", "cv", "importance_repeats")


def _bad(message: str) -> Invalid:
    return Invalid(message, code="invalid_search")


def _dimension(model_type: str, name: str, raw: Any) -> dict[str, Any]:
    from bastion.ml import model_types

    if isinstance(raw, list):
        raw = {"type": "categorical", "choices": raw}
    if not isinstance(raw, dict):
        raise _bad(
            f"space.{name} must be an object with a type (float, int, categorical) or a list of choices"
        )
    kind = raw.get("type")
    out: dict[str, Any]
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not 1 <= len(choices) <= MAX_CHOICES:
            raise _bad(f"space.{name}.choices must be a list of 1 to {MAX_CHOICES} values")
        if any(not (c is None or isinstance(c, bool | int | float | str)) for c in choices):
            raise _bad(f"space.{name}.choices must be numbers, strings, booleans or null")
        values, out = choices, {"type": "categorical", "choices": choices}
    elif kind in ("float", "int"):
        try:
            low, high = (
                (float(raw["low"]), float(raw["high"]))
                if kind == "float"
                else (int(raw["low"]), int(raw["high"]))
            )
        except (KeyError, TypeError, ValueError):
            raise _bad(f"space.{name} needs numeric low and high") from None
        log = bool(raw.get("log", False))
        if not low < high or (log and low <= 0):
            raise _bad(f"space.{name}: low must be below high (and above 0 on a log scale)")
        values, out = [low, high], {"type": kind, "low": low, "high": high, "log": log}
    else:
        raise _bad(f"space.{name}.type must be float, int or categorical")
    for value in values:
        model_types.validate_params(model_type, {name: value})
    return out


def validate_search(model_type: str, raw: Any, task: str | None = None) -> dict[str, Any]:
    """The normalised search spec, or Invalid saying what is wrong."""
    from bastion.ml import model_types

    if not isinstance(raw, dict):
        raise _bad("search must be an object with a space")
    fields = model_types.get_model_type(model_type).params.model_fields
    space = raw.get("space")
    if not isinstance(space, dict) or not 1 <= len(space) <= MAX_PARAMS:
        raise _bad(f"search.space must map 1 to {MAX_PARAMS} parameter names to ranges or choices")
    dims: dict[str, Any] = {}
    for name, dim in space.items():
        if name not in fields or name in _FIXED:
            tunable = sorted(set(fields) - set(_FIXED))
            raise _bad(f"{name!r} is not a tunable parameter of {model_type}; valid: {', '.join(tunable)}")
        dims[name] = _dimension(model_type, name, dim)

    def number(key: str, default: Any, low: float, high: float, kind: type = int) -> Any:
        value = raw.get(key, default)
        if value is None:
            return None
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise _bad(f"search.{key} must be a number") from None
        if not low <= value <= high:
            raise _bad(f"search.{key} must be between {low:g} and {high:g}")
        return value

    return {
        "space": dims,
        "trials": number("trials", 20, 1, MAX_TRIALS),
        "parallel": number("parallel", 1, 1, MAX_PARALLEL),
        "cv": number("cv", 5, 2, 20),
        "time_budget_seconds": number("time_budget_seconds", None, 1, 30 * 86400, float),
        "include_defaults": bool(raw.get("include_defaults", True)),
        "task": task,
    }


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one point of the space from an Optuna trial."""
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if dim["type"] == "categorical":
            out[name] = trial.suggest_categorical(name, dim["choices"])
        elif dim["type"] == "int":
            out[name] = trial.suggest_int(name, dim["low"], dim["high"], log=dim["log"])
        else:
            out[name] = trial.suggest_float(name, dim["low"], dim["high"], log=dim["log"])
    return out


def defaults_in(model_type: str, space: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """The model type's default values for the searched names, if each lies inside the space."""
    from bastion.ml import model_types

    parsed = model_types.validate_params(model_type, base).model_dump(mode="json")
    point: dict[str, Any] = {}
    for name, dim in space.items():
        value = parsed.get(name)
        if dim["type"] == "categorical":
            if value not in dim["choices"]:
                return None
        elif value is None or not dim["low"] <= value <= dim["high"]:
            return None
        point[name] = value
    return point
