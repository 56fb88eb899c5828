"""Federated LoRA, server side: a federation whose model is a LoRA adapter on a registered base model.

The coordinator writes ``{"type": "lora_adapter", "base_model": NAME, "lora": {...}}``; at creation
the server resolves the base model, checks the target modules, and fills in what sites need to
build the same adapter and to check they hold the same base model: its weights hash, model type,
target modules and the PEFT config. The base model's path never leaves the server. The initial
adapter (seeded) is the round-0 global model; every round's adapter lands in the model registry
with the config :func:`registry_config` adds, so ``/models/{id}/generate`` can load it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import Invalid
from bastion.llm.params import Hyperparameters, LoraParams, resolve_targets

LORA_TYPE = "lora_adapter"


class LoraModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = LORA_TYPE
    base_model: str = Field(min_length=1, max_length=100)
    lora: LoraParams = Field(default_factory=LoraParams)


def is_lora(model: dict[str, Any]) -> bool:
    return model.get("type") == LORA_TYPE


def initial_adapter(model: dict[str, Any], bases: Any, seed: int) -> dict[str, Any]:
    """Fill ``model`` in place with what sites need; return the seeded initial adapter's arrays."""
    import torch
    from peft import get_peft_model

    from bastion.errors import NotFound
    from bastion.llm.lora import adapter_arrays, lora_config
    from bastion.llm.modeldir import load_base

    try:
        spec = LoraModelSpec.model_validate(
            {k: model[k] for k in ("type", "base_model", "lora") if k in model}
        )
    except ValueError as exc:
        raise Invalid(f"invalid LoRA model spec: {exc}", code="invalid_model_config") from None
    try:
        base = bases.get(spec.base_model)
    except NotFound:
        raise Invalid(f"unknown base model {spec.base_model!r}", code="unknown_base_model") from None
    targets = resolve_targets(
        Hyperparameters(lora=spec.lora), base.model_type, base.path, base.weights_sha256
    )
    params = {"lora": spec.lora.model_dump(), "target_modules": targets, "base_model_type": base.model_type}
    torch.manual_seed(seed)
    net, _ = load_base(base.path, base.weights_sha256)
    net = get_peft_model(net, lora_config(params))
    peft = {
        k: (sorted(v) if isinstance(v, set) else v) for k, v in net.peft_config["default"].to_dict().items()
    }
    model.clear()
    model.update(
        {
            "type": LORA_TYPE,
            "base_model": base.name,
            "base_model_id": base.id,
            "base_sha256": base.weights_sha256,
            "base_model_type": base.model_type,
            "lora": spec.lora.model_dump(),
            "target_modules": targets,
            "peft": {
                k: v for k, v in peft.items() if isinstance(v, str | int | float | bool | list | type(None))
            },
        }
    )
    return adapter_arrays(net)


def registry_config(model: dict[str, Any]) -> dict[str, Any]:
    """Extra config of a federation's registry versions: what generation needs to load the adapter."""
    if not is_lora(model):
        return {}
    return {
        "kind": "lora_adapter",
        "base_model": {
            "id": model["base_model_id"],
            "name": model["base_model"],
            "sha256": model["base_sha256"],
        },
        "peft": model["peft"],
    }
