"""Optimizer and learning-rate schedule of a fine-tuning job, kept with its checkpoints without pickle.

``torch.save`` of an optimizer (and what Trainer writes as ``optimizer.pt``/``scheduler.pt``) is a
pickle, which never enters the vault. Here the state is one safetensors file: the optimizer's
tensors under ``state.<param index>.<name>`` and everything else as JSON in the header's metadata
(``optimizer``: param groups and the non-tensor per-parameter values; ``scheduler``: the schedule's
``state_dict``, plain numbers for the linear schedule). Loading checks the parameter count and the
format before touching the optimizer, so a stale or foreign blob is refused rather than half applied.

The job builds the optimizer and schedule itself (Trainer's defaults: AdamW, linear decay to zero
over *all* epochs' steps, no warm-up) and hands them to Trainer, so a resumed attempt continues the
schedule where the checkpoint left it instead of restarting it over the remaining epochs.
"""

from __future__ import annotations

import json
from typing import Any

FORMAT = "bastion-optstate-1"


def make_optimizer(model: Any, learning_rate: float, total_steps: int) -> tuple[Any, Any]:
    """AdamW over the trainable (LoRA) parameters and Trainer's default linear schedule."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.0
    )
    return optimizer, get_linear_schedule_with_warmup(optimizer, 0, max(total_steps, 1))


def state_bytes(optimizer: Any, scheduler: Any) -> bytes:
    """The optimizer's and schedule's state as a safetensors file (no pickle)."""
    import torch
    from safetensors.torch import save

    opt = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in opt["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[name] = value
    meta = {
        "format": FORMAT,
        "optimizer": json.dumps({"param_groups": opt["param_groups"], "plain": plain}),
        "scheduler": json.dumps(scheduler.state_dict()),
    }
    return save(tensors, metadata=meta)


def load_state(optimizer: Any, scheduler: Any, data: bytes) -> int:
    """Restore both from :func:`state_bytes`; returns the schedule's step count. ValueError if the
    blob is not ours or was made for a different set of parameters."""
    from safetensors.torch import load

    meta = _metadata(data)
    if meta.get("format") != FORMAT:
        raise ValueError("not a Bastion optimizer state")
    opt_meta = json.loads(meta["optimizer"])
    groups = opt_meta["param_groups"]
    current = optimizer.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in current]:
        raise ValueError("optimizer state was saved for different parameters")
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in load(data).items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in opt_meta["plain"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(json.loads(meta["scheduler"]))
    return int(scheduler.last_epoch)


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise ValueError("not a safetensors file")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("not a safetensors file")
    header = json.loads(data[8 : 8 + size])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}
