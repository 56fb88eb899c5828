"""The JSON configs of the federated models, without torch: the server validates and initialises
them on request paths where importing torch (about a second) would be the whole cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bastion.errors import Invalid

MRI_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


class TabularMLPConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["tabular_mlp"] = "tabular_mlp"
    in_features: int = Field(ge=1, le=100_000)
    num_classes: int = Field(ge=2, le=10_000)
    hidden: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(default_factory=lambda: [64], max_length=16)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class BrainTumourCNNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["brain_tumour_cnn"] = "brain_tumour_cnn"
    in_channels: int = Field(default=1, ge=1, le=4)
    image_size: int = Field(default=128, ge=16, le=1024)
    num_classes: int = Field(default=len(MRI_CLASSES), ge=2, le=1000)
    channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        default_factory=lambda: [16, 32, 64, 64], min_length=1, max_length=6
    )
    hidden: int = Field(default=64, ge=1, le=8192)
    dropout: float = Field(default=0.25, ge=0.0, lt=1.0)


ModelConfig = Annotated[TabularMLPConfig | BrainTumourCNNConfig, Field(discriminator="type")]
_CONFIG = TypeAdapter(ModelConfig)


def parse_model_config(config: Mapping[str, Any]) -> TabularMLPConfig | BrainTumourCNNConfig:
    try:
        return _CONFIG.validate_python(dict(config))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        raise Invalid(f"invalid model config ({where}): {err['msg']}", code="invalid_model_config") from exc


def parameter_count(config: TabularMLPConfig | BrainTumourCNNConfig) -> int:
    """Trainable parameters of the model ``config`` describes, by arithmetic (nothing is allocated)."""
    if isinstance(config, TabularMLPConfig):
        widths = [config.in_features, *config.hidden, config.num_classes]
        return sum(a * b + b for a, b in itertools.pairwise(widths))
    total, width = 0, config.in_channels
    for ch in config.channels:
        total += width * ch * 9 + ch + 2 * ch  # conv weights and bias, group-norm scale and shift
        width = ch
    return (
        total
        + width * 16 * config.hidden
        + config.hidden
        + config.hidden * config.num_classes
        + config.num_classes
    )


def model_config_schema() -> dict[str, Any]:
    """The JSON schema of a model config (both types inline, no references), for the API document."""
    variants = []
    for config in (TabularMLPConfig, BrainTumourCNNConfig):
        schema = config.model_json_schema()
        schema["required"] = sorted({"type", *schema.get("required", [])})  # the union needs the tag
        variants.append(schema)
    variants.append(  # bastion.llm.federated validates the rest against a registered base model
        {
            "title": "LoraAdapterSpec",
            "type": "object",
            "properties": {
                "type": {"const": "lora_adapter"},
                "base_model": {"type": "string", "minLength": 1, "maxLength": 200},
                "lora": {"type": "object"},
            },
            "required": ["type", "base_model"],
        }
    )
    return {
        "oneOf": variants,
        "discriminator": {"propertyName": "type"},
        "description": "model spec, e.g. {'type': 'tabular_mlp', 'in_features': 64, 'num_classes': 10}",
    }
