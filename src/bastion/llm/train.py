"""The fine-tuning job target: LoRA on a registered base model, inside the job process.

Order of work: offline mode on (nothing from a hub) → load the base model and check its weights'
hash → read the scrubbed training (and validation) file from the vault → encode (loss on
completions only) → PEFT LoRA → resume from the newest epoch checkpoint in the vault, if an earlier
attempt left one → transformers' Trainer (eval loss and perplexity every epoch, checkpoint every
epoch into the vault) or, with ``dp.enabled``, Bastion's Opacus DP-SGD on the LoRA parameters →
the adapter (safetensors) packed into the job's artifact.

Resuming restores the adapter weights, the epoch count and (Trainer path) the optimizer's moments
and the learning-rate schedule, stored next to each checkpoint as safetensors + JSON
(:mod:`bastion.llm.optstate`; Trainer's own ``optimizer.pt`` is a pickle and never enters the
vault), so a resumed run continues its schedule instead of restarting it. The DP-SGD path keeps a
constant learning rate and restores weights and epoch count only.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from typing import Any

from bastion.jobs.child import JobContext
from bastion.llm.lora import (
    adapter_bytes,
    collate,
    encode_all,
    eval_loss,
    load_adapter_bytes,
    lora_config,
    pack,
    split,
    train_with_trainer,
)

LORA_MODEL_TYPE = "llm_lora"
_OPT_PREFIX = "ftopt-"
_CKPT = re.compile(r"ftckpt-(?P<job>[0-9a-f-]{36})-e(?P<epoch>\d+)")


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def checkpoint_id(job_id: str, epoch: int) -> str:
    return f"ftckpt-{job_id}-e{epoch}"


def optimizer_state_id(job_id: str, epoch: int) -> str:
    return f"{_OPT_PREFIX}{job_id}-e{epoch}"


def _latest_checkpoint(vault: Any, job_id: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for artifact in vault.list():
        m = _CKPT.fullmatch(artifact)
        if m and m["job"] == job_id and (best is None or int(m["epoch"]) > best[0]):
            best = (int(m["epoch"]), artifact)
    return best


def world_size() -> int:
    """Data-parallel workers training this model together (1 outside Ray Train)."""
    import torch.distributed as dist

    return int(dist.get_world_size()) if dist.is_available() and dist.is_initialized() else 1


def per_device_batch(batch_size: int, world: int) -> int:
    """Each worker's share of a step's batch, so N workers take the steps one worker takes."""
    return max(-(-batch_size // world), 1)


def run_finetune(ctx: JobContext) -> dict[str, Any]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from peft import get_peft_model

    from bastion.jobs.package import ModelPackage
    from bastion.jobs.package import pack as pack_model
    from bastion.jobs.runner import artifact_id_for
    from bastion.llm.base_models import context_length, load_base
    from bastion.llm.textdata import read_stored

    spec = ctx.spec
    job_id, attempt, seed = str(spec["job_id"]), int(spec.get("attempt") or 1), int(spec.get("seed") or 0)
    params, files = dict(spec["params"]), dict(spec["dataset"])
    base = params["base_model"]
    world = world_size()
    if int(params.get("num_workers") or 1) != world:
        from bastion.errors import Invalid

        raise Invalid(
            "num_workers above 1 fine-tunes on a Ray cluster: run the job with BASTION_EXECUTOR=ray",
            code="needs_ray_executor",
        )
    ctx.progress(0.0, {"stage": "validating_files"})
    torch.manual_seed(seed)
    random.seed(seed)
    model, tokenizer = load_base(base["path"], base["sha256"])
    ctx.log(f"base model {base['name']}: {base['architecture']}, weights hash checked")
    vault = ctx.vault()
    train_file = read_stored(vault.get_bytes(files["training_artifact"]))
    positions = context_length(model.config)
    max_len = min(int(params.get("max_seq_length") or positions), positions)
    train_examples = encode_all(tokenizer, train_file.shape, train_file.records, max_len)
    if files.get("validation_artifact"):
        v = read_stored(vault.get_bytes(files["validation_artifact"]))
        val_examples = encode_all(tokenizer, v.shape, v.records, max_len)
    else:
        train_examples, val_examples = split(train_examples, float(params["validation_fraction"]), seed)
    if params.get("packing"):
        train_examples = pack(train_examples, max_len)
    trained_tokens = sum(sum(1 for x in e["labels"] if x != -100) for e in train_examples)
    ctx.log(
        f"{len(train_examples)} training and {len(val_examples)} validation examples, {trained_tokens} trained tokens per epoch"
    )

    model = get_peft_model(model, lora_config(params))
    if params.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    epochs_total = int(params["n_epochs"])
    done_epochs = 0
    resumed = _latest_checkpoint(vault, job_id)
    if resumed is not None:
        from bastion.jobs.package import unpack

        done_epochs = min(resumed[0], epochs_total)
        load_adapter_bytes(model, unpack(vault.get_bytes(resumed[1])).model_bytes)
        ctx.log(f"resumed from checkpoint of epoch {done_epochs} (attempt {attempt})")
    initial = eval_loss(model, val_examples, pad_id, int(params["batch_size"]))
    ctx.progress(done_epochs / epochs_total, {"stage": "train", "initial_eval_loss": initial})

    optimizers: tuple[Any, Any] | None = None
    restored_step: int | None = None
    if not params["dp"].get("enabled"):
        from bastion.llm import optstate

        bs = per_device_batch(int(params["batch_size"]), world)  # each rank's share of the examples
        steps_per_epoch = max(math.ceil(math.ceil(len(train_examples) / world) / bs), 1)
        optimizers = optstate.make_optimizer(
            model, float(params["learning_rate"]), steps_per_epoch * epochs_total
        )
        if resumed is not None and optimizer_state_id(job_id, resumed[0]) in set(vault.list()):
            restored_step = optstate.load_state(
                *optimizers, vault.get_bytes(optimizer_state_id(job_id, resumed[0]))
            )
            ctx.log(f"optimizer and learning-rate schedule restored at step {restored_step}")
        elif done_epochs:  # an older checkpoint without optimizer state: at least keep the schedule
            for _ in range(done_epochs * steps_per_epoch):
                optimizers[1].step()

    def checkpoint(epoch: int, metrics: dict[str, Any], step: int) -> None:
        blob = pack_model(
            ModelPackage(job_id, LORA_MODEL_TYPE, "safetensors", {"epoch": epoch}, adapter_bytes(model))
        )
        if optimizers is not None:  # first, so an adapter checkpoint never lacks its optimizer state
            from bastion.llm import optstate

            vault.put_bytes(
                optimizer_state_id(job_id, epoch),
                optstate.state_bytes(*optimizers),
                meta={"kind": "ft-optimizer-state", "job_id": job_id},
            )
        vault.put_bytes(checkpoint_id(job_id, epoch), blob, meta={"kind": "ft-checkpoint", "job_id": job_id})
        event = {
            "stage": "train",
            "epoch": epoch,
            "step": step,
            **metrics,
            "checkpoint": checkpoint_id(job_id, epoch),
        }
        ctx.progress(epoch / epochs_total, event)

    started = time.perf_counter()
    remaining = epochs_total - done_epochs
    dp_report = None
    if remaining > 0 and params["dp"].get("enabled"):
        dp_report = _train_dp(model, train_examples, val_examples, params, pad_id, done_epochs, checkpoint)
    elif remaining > 0:
        _train_trainer(
            ctx,
            model,
            train_examples,
            val_examples,
            params,
            pad_id,
            seed,
            done_epochs,
            epochs_total,
            trained_tokens,
            checkpoint,
            optimizers,
        )
    elapsed = time.perf_counter() - started
    final = eval_loss(model, val_examples, pad_id, int(params["batch_size"]))
    weights = adapter_bytes(model)
    config = {
        "kind": "lora_adapter",
        "base_model": {k: base[k] for k in ("id", "name", "sha256", "architecture")},
        "peft": {
            k: (list(v) if isinstance(v, set) else v)
            for k, v in model.peft_config["default"].to_dict().items()
            if isinstance(v, str | int | float | bool | list | set | type(None))
        },
        "shape": train_file.shape,
        "suffix": params.get("suffix"),
    }
    blob = pack_model(ModelPackage(job_id, LORA_MODEL_TYPE, "safetensors", config, weights))
    info = vault.put_bytes(
        artifact_id_for(job_id, attempt),
        blob,
        meta={"kind": "job-model", "job_id": job_id, "format": "safetensors"},
    )
    results: dict[str, Any] = {
        "initial_eval_loss": initial,
        "eval_loss": final,
        "perplexity": math.exp(final) if math.isfinite(final) and final < 50 else None,
        "trained_tokens": trained_tokens * remaining,
        "train_runtime_seconds": round(elapsed, 3),
        "tokens_per_second": round(trained_tokens * remaining / elapsed, 2) if elapsed > 0 else None,
        "epochs": epochs_total,
        "resumed_from_epoch": done_epochs if resumed else None,
        "resumed_schedule_step": restored_step,
        "adapter_bytes": len(weights),
        "peak_rss_mb": peak_rss_mb(),
        "num_workers": world,
    }
    if dp_report is not None:
        results["dp"] = {
            **dp_report.to_dict(),
            "guarantee": "record-level (add or remove one training example); covers the adapter weights",
            "not_covered": ["the base model (public, not trained)", "evaluation loss and perplexity"],
        }
        results["epsilon"] = dp_report.epsilon
    ctx.log(f"adapter saved: {len(weights)} bytes; eval loss {initial:.4f} -> {final:.4f}")
    return {
        "results": results,
        "model": {"artifact_id": info.artifact_id, "version": info.version, "format": "safetensors"},
    }


def _train_trainer(
    ctx: JobContext,
    model: Any,
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    params: dict[str, Any],
    pad_id: int,
    seed: int,
    done_epochs: int,
    epochs_total: int,
    tokens_per_epoch: int,
    checkpoint: Any,
    optimizers: tuple[Any, Any] | None = None,
) -> None:
    from transformers import TrainerCallback

    bs = per_device_batch(int(params["batch_size"]), world_size())

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return
            frac = (done_epochs + (state.epoch or 0)) / epochs_total
            spent = time.perf_counter() - self.t0
            done_tokens = tokens_per_epoch * (state.epoch or 0)
            eta = spent / max(state.global_step, 1) * max(state.max_steps - state.global_step, 0)
            ctx.progress(
                frac,
                {
                    "stage": "train",
                    "step": state.global_step,
                    "loss": logs["loss"],
                    "tokens_per_second": round(done_tokens / spent, 1) if spent else None,
                    "eta_seconds": round(eta, 1),
                },
            )

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            epoch = done_epochs + round(state.epoch or 0)
            loss = float((metrics or {}).get("eval_loss", float("nan")))
            train_loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
            checkpoint(
                epoch,
                {
                    "train_loss": train_loss,
                    "eval_loss": loss,
                    "perplexity": math.exp(loss) if loss < 50 else None,
                },
                state.global_step,
            )

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not val:  # no evaluation: checkpoint here instead
                epoch = done_epochs + round(state.epoch or 0)
                train_loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
                checkpoint(epoch, {"train_loss": train_loss}, state.global_step)

    train_with_trainer(
        model,
        train,
        val,
        epochs=epochs_total - done_epochs,
        batch_size=bs,
        learning_rate=float(params["learning_rate"]),
        seed=seed,
        pad_id=pad_id,
        callbacks=[Progress()],
        bf16=bool(params.get("bf16")),
        gradient_checkpointing=bool(params.get("gradient_checkpointing")),
        optimizers=optimizers,
    )


def _train_dp(
    model: Any,
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    params: dict[str, Any],
    pad_id: int,
    done_epochs: int,
    checkpoint: Any,
) -> Any:
    """DP-SGD on the LoRA parameters with Bastion's Opacus runner (one record = one example)."""
    import torch

    from bastion.ml.dp_sgd import train_private
    from bastion.privacy.config import DPParams

    batch = collate(train, pad_id)
    X = torch.stack([batch["input_ids"], batch["attention_mask"]], dim=1)
    y = batch["labels"]

    class LM(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(input_ids=x[:, 0], attention_mask=x[:, 1]).logits

    def loss_fn(logits: Any, labels: Any) -> Any:
        # Mean over each example's trained tokens, then over examples: every record weighs the same.
        lg, lb = logits[:, :-1].float(), labels[:, 1:]
        per_tok = torch.nn.functional.cross_entropy(
            lg.reshape(-1, lg.size(-1)), lb.reshape(-1), ignore_index=-100, reduction="none"
        ).view(lb.shape)
        counts = (lb != -100).sum(dim=1).clamp(min=1)
        return (per_tok.sum(dim=1) / counts).mean()

    wrapper = LM(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=float(params["learning_rate"])
    )
    pad = int(pad_id)

    def epoch_end(epoch: int, train_loss: float, eps: float, steps: int) -> None:
        loss = eval_loss(model, val, pad, int(params["batch_size"])) if val else float("nan")
        checkpoint(
            done_epochs + epoch,
            {
                "train_loss": train_loss,
                "eval_loss": loss,
                "perplexity": math.exp(loss) if loss < 50 else None,
                "epsilon": eps,
            },
            steps,
        )

    model.train()
    return train_private(
        wrapper,
        optimizer,
        loss_fn,
        X,
        y,
        batch_size=int(params["batch_size"]),
        epochs=int(params["n_epochs"]) - done_epochs,
        dp=DPParams(**params["dp"]),
        epoch_end=epoch_end,
    )
