"""Form fields generated from a model type's JSON Schema, and the submitted values parsed back.

The schema is the one ``GET /training/model-types`` publishes (pydantic's); the service validates
the parsed params again (bounds, choices), so this module only turns text into JSON types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import Invalid

PARAM_PREFIX = "p."


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str  # number | integer | select | checkbox | json | text
    default: Any
    help: str = ""
    optional: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] = field(default_factory=list)

    @property
    def input_name(self) -> str:
        return PARAM_PREFIX + self.name

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"


def _kind(spec: dict[str, Any]) -> tuple[str, bool, dict[str, Any]]:
    """(kind, optional, the non-null branch) of one property."""
    branches = spec.get("anyOf")
    optional = False
    if branches:
        real = [b for b in branches if b.get("type") != "null"]
        optional = len(real) < len(branches)
        spec = {**spec, **real[0]} if len(real) == 1 else {**spec, "type": "json"}
    if "enum" in spec or "const" in spec:
        return "select", optional, spec
    kind = spec.get("type", "json")
    if kind == "boolean":
        return "checkbox", optional, spec
    if kind in ("number", "integer", "string"):
        return ("text" if kind == "string" else kind), optional, spec
    return "json", optional, spec


def fields_of(schema: dict[str, Any]) -> list[Field]:
    out = []
    for name, raw in schema.get("properties", {}).items():
        kind, optional, spec = _kind(raw)
        lo = spec.get("minimum", spec.get("exclusiveMinimum"))
        hi = spec.get("maximum", spec.get("exclusiveMaximum"))
        choices = [str(c) for c in spec.get("enum", [spec["const"]] if "const" in spec else [])]
        out.append(
            Field(
                name=name,
                label=str(raw.get("title") or name.replace("_", " ").capitalize()),
                kind=kind,
                default=raw.get("default"),
                help=str(raw.get("description", "")),
                optional=optional,
                minimum=lo,
                maximum=hi,
                choices=choices,
            )
        )
    return out


def parse_params(schema: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """Submitted text to JSON values; an empty field keeps the model type's default."""
    params: dict[str, Any] = {}
    for f in fields_of(schema):
        raw = form.get(f.input_name)
        if f.kind == "checkbox":
            value: Any = raw is not None and raw not in ("", "false", "off")
            if value != bool(f.default):
                params[f.name] = value
            continue
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        try:
            if f.kind == "integer":
                value = int(raw)
            elif f.kind == "number":
                value = float(raw)
            elif f.kind == "json":
                value = json.loads(raw)
            else:
                value = raw
        except ValueError:
            raise Invalid(f"{f.label}: {raw[:40]!r} is not a valid {f.kind}", code="invalid_params") from None
        params[f.name] = value
    return params
