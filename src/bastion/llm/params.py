"""Hyper-parameters of a fine-tuning job, and the LoRA target modules each architecture defaults to.

Checked when the job is created (a 422 names the field), so the job process never starts with
settings it cannot honour: an unknown target module, QLoRA or bf16 without a CUDA GPU.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import Invalid
from bastion.privacy.config import DPParams

# Per model_type (config.json): attention projections, the usual LoRA choice.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "gptj": ["q_proj", "v_proj"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "phi": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "opt": ["q_proj", "v_proj"],
    "bloom": ["query_key_value"],
    "falcon": ["query_key_value"],
}


class LoraParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, le=256, description="Rank of the update matrices")
    alpha: float = Field(16.0, gt=0, le=1024, description="Scaling: the update is multiplied by alpha/r")
    dropout: float = Field(0.05, ge=0.0, le=0.9)
    target_modules: list[str] | None = Field(
        None, max_length=32, description="Module names to adapt; default per architecture"
    )


class Hyperparameters(BaseModel):
    """OpenAI's ``hyperparameters`` block, plus LoRA, DP and the trainer's switches."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: int = Field(3, ge=1, le=50)
    batch_size: int = Field(4, ge=1, le=256)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    lora: LoraParams = Field(default_factory=LoraParams)
    validation_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="Held out of the training file when no validation_file is given"
    )
    packing: bool = Field(False, description="Concatenate examples into full-length blocks")
    gradient_checkpointing: bool = False
    max_seq_length: int | None = Field(None, ge=8, le=32768)
    qlora: bool = Field(False, description="4-bit base weights (bitsandbytes); needs a CUDA GPU")
    bf16: bool = Field(False, description="bfloat16 mixed precision; needs a CUDA GPU")
    dp: DPParams = Field(default_factory=DPParams)
    num_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Data-parallel workers (Ray Train TorchTrainer, DDP); above 1 needs the Ray executor",
    )


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_hardware(hp: Hyperparameters) -> None:
    for flag, what in (("qlora", "QLoRA (4-bit bitsandbytes)"), ("bf16", "bf16 mixed precision")):
        if getattr(hp, flag) and not cuda_available():
            raise Invalid(
                f"{what} needs a CUDA GPU and this server has none; submit without '{flag}'",
                code="gpu_required",
                field=f"hyperparameters.{flag}",
            )
    if hp.dp.enabled and (hp.packing or hp.qlora):
        raise Invalid(
            "DP fine-tuning trains one example per record: packing and QLoRA are off", code="dp_unsupported"
        )
    if hp.dp.enabled and hp.num_workers > 1:
        raise Invalid(
            "dp cannot be combined with num_workers above 1; fine-tune DP-SGD on one worker",
            code="dp_unsupported",
            field="hyperparameters.num_workers",
        )


def check_executor(hp: Hyperparameters, executor: str) -> None:
    """Data-parallel fine-tuning runs on a Ray cluster; refuse it up front where jobs run locally."""
    if hp.num_workers > 1 and executor != "ray":
        raise Invalid(
            "num_workers above 1 fine-tunes on a Ray cluster and this server runs jobs locally: "
            "submit with num_workers 1 (or run the server and workers with BASTION_EXECUTOR=ray)",
            code="needs_ray_executor",
            field="hyperparameters.num_workers",
        )


@lru_cache(maxsize=16)
def module_names(path: str, sha256: str) -> frozenset[str]:
    """Leaf names of the base model's modules, from its config on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return frozenset(name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name)


def resolve_targets(hp: Hyperparameters, model_type: str, path: str, sha256: str) -> list[str]:
    """The target modules to adapt; every name must exist in the base model (422 otherwise)."""
    targets = hp.lora.target_modules or DEFAULT_TARGETS.get(model_type)
    if not targets:
        raise Invalid(
            f"no default LoRA target modules for {model_type!r}: give hyperparameters.lora.target_modules",
            code="target_modules_required",
        )
    names = module_names(path, sha256)
    missing = [t for t in targets if t not in names]
    if missing:
        raise Invalid(
            f"LoRA target module(s) {', '.join(missing)} do not exist in this {model_type} model",
            code="unknown_target_module",
            field="hyperparameters.lora.target_modules",
            missing=missing,
        )
    return list(targets)


def to_json(hp: Hyperparameters) -> dict[str, Any]:
    return hp.model_dump(mode="json")


Status = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
