"""PyTorch models that sites train in a federation, and the local training loop they run.

``tabular_mlp`` is :class:`bastion.ml.mlp.MLP` (ReLU), the network jobs train too; ``brain_tumour_cnn``
is defined here.

Models are built from a small JSON config (which the server signs with the global model), so a site
never unpickles code or weights: parameters move as ``dict[str, np.ndarray]`` (safetensors on the
wire). ``fit`` supports FedProx's proximal term. This module imports torch at import time: the server
imports it lazily (server-side evaluation only; initial weights come from :mod:`bastion.ml.fl_init`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bastion.errors import Invalid
from bastion.ml.fl_config import (
    MRI_CLASSES,
    BrainTumourCNNConfig,
    ModelConfig,
    TabularMLPConfig,
    parse_model_config,
)
from bastion.ml.mlp import MLP

__all__ = [
    "MRI_CLASSES",
    "BrainTumourCNN",
    "BrainTumourCNNConfig",
    "FunctionalSGD",
    "ModelConfig",
    "TabularMLPConfig",
    "build_model",
    "evaluate",
    "fit",
    "get_parameters",
    "parse_model_config",
    "predict",
    "set_parameters",
]


class BrainTumourCNN(nn.Module):
    """Small CNN for single-channel MRI slices (4 classes by default).

    Conv-GroupNorm-ReLU-MaxPool blocks, adaptive average pooling to 4x4 and a two-layer head. Group
    norm, not batch norm: batch norm's running statistics are site-specific and average badly across
    non-IID hospitals (Hsieh et al. 2020), while group norm has only ordinary weights.
    """

    def __init__(self, config: BrainTumourCNNConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = config.in_channels
        for ch in config.channels:
            blocks += [
                nn.Conv2d(width, ch, kernel_size=3, padding=1),
                nn.GroupNorm(math.gcd(ch, 8), ch),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            width = ch
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width * 16, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.head(self.pool(self.features(x)))
        return result


def build_model(config: Mapping[str, Any], *, seed: int | None = None) -> nn.Module:
    """Model from its JSON config; ``seed`` makes the initial weights reproducible."""
    cfg = parse_model_config(config)
    ctx = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with ctx:
        if seed is not None:
            torch.manual_seed(seed)
        if isinstance(cfg, TabularMLPConfig):
            return MLP(cfg.in_features, cfg.hidden, cfg.num_classes, dropout=cfg.dropout)
        return BrainTumourCNN(cfg)


def get_parameters(model: nn.Module) -> dict[str, np.ndarray]:
    """Every floating entry of the state dict as an owned float32 array."""
    return {
        name: t.detach().cpu().numpy().astype(np.float32, copy=True)
        for name, t in model.state_dict().items()
        if t.is_floating_point()
    }


def set_parameters(model: nn.Module, params: Mapping[str, np.ndarray]) -> None:
    """Load ``params`` into ``model``; names and shapes must match exactly (:class:`Invalid` if not)."""
    state = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    if set(params) != set(state):
        odd = sorted(set(params) ^ set(state))
        raise Invalid(f"parameters do not match the model (first difference: {odd[0]!r})")
    with torch.no_grad():
        for name, target in state.items():
            arr = np.asarray(params[name])
            if tuple(arr.shape) != tuple(target.shape):
                raise Invalid(f"parameter {name!r} has shape {arr.shape}, expected {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.array(arr, dtype=np.float32)))


def _tensors(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if len(xt) != len(yt) or len(xt) == 0:
        raise Invalid("features and labels must be non-empty and of the same length")
    return xt, yt


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    yield from torch.split(order, batch_size)


class FunctionalSGD:
    """``torch.optim.SGD`` (no weight decay, dampening or Nesterov) through torch's functional ``sgd``.

    Same arithmetic as the class, which calls the same function; but the class's methods are wrapped
    in ``torch._disable_dynamo``, whose first call imports ``torch._dynamo`` (0.7-2.2 s measured on
    the 2-core machine), and a site's first training step would pay it every time a client starts.
    """

    def __init__(self, params: list[nn.Parameter], *, lr: float, momentum: float = 0.0) -> None:
        self.params, self.lr, self.momentum = params, lr, momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.sgd import sgd

        live = [(i, p, p.grad) for i, p in enumerate(self.params) if p.grad is not None]
        buffers = [self.buffers[i] for i, _, _ in live]
        sgd(
            [p for _, p, _ in live],
            [g for _, _, g in live if g is not None],
            buffers,
            weight_decay=0.0,
            momentum=self.momentum,
            lr=self.lr,
            dampening=0.0,
            nesterov=False,
            maximize=False,
        )
        for (i, _, _), buf in zip(live, buffers, strict=True):
            self.buffers[i] = buf


def fit(
    model: nn.Module,
    X: Any,
    y: Any,
    epochs: int = 1,
    lr: float = 0.01,
    batch_size: int = 32,
    prox_mu: float = 0.0,
    global_params: Mapping[str, np.ndarray] | None = None,
    *,
    momentum: float = 0.0,
    optimizer: Literal["sgd", "adam"] = "sgd",
    seed: int | None = None,
) -> dict[str, float]:
    """Local training (SGD by default, or Adam) on a site's data; with ``prox_mu > 0`` adds FedProx's ``mu/2 * ||w - w_global||^2``.

    ``global_params`` defaults to the model's weights at the start, which is what the site received.
    Returns the mean training loss of the last epoch (without the proximal term) and the sample count.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or prox_mu < 0:
        raise Invalid("epochs and batch_size must be >= 1, lr > 0 and prox_mu >= 0")
    xt, yt = _tensors(X, y)
    anchors: list[tuple[nn.Parameter, torch.Tensor]] = []
    if prox_mu > 0:
        ref = global_params if global_params is not None else get_parameters(model)
        named = dict(model.named_parameters())
        missing = [n for n in named if n not in ref]
        if missing:
            raise Invalid(f"global parameters lack {missing[0]!r}")
        anchors = [(p, torch.from_numpy(np.array(ref[n], dtype=np.float32))) for n, p in named.items()]
    opt: torch.optim.Optimizer | FunctionalSGD
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "sgd":
        opt = FunctionalSGD(list(model.parameters()), lr=lr, momentum=momentum)
    else:
        raise Invalid("optimizer must be 'sgd' or 'adam'")
    loss_fn = nn.CrossEntropyLoss()
    ctx = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    last = 0.0
    with ctx:
        gen = None
        if seed is not None:
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            total, seen = 0.0, 0
            for idx in _batches(len(xt), batch_size, gen):
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                objective = loss
                if anchors:
                    prox = sum(((p - g) ** 2).sum() for p, g in anchors)
                    objective = loss + 0.5 * prox_mu * prox
                objective.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            last = total / seen
    return {"loss": last, "num_samples": float(len(xt))}


def predict(model: nn.Module, X: Any, batch_size: int = 256) -> np.ndarray:
    xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    model.eval()
    with torch.no_grad():
        return torch.cat([model(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]).numpy()


def evaluate(model: nn.Module, X: Any, y: Any, batch_size: int = 256) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy on held-out data."""
    xt, yt = _tensors(X, y)
    model.eval()
    loss_sum, correct = 0.0, 0
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    with torch.no_grad():
        for i in range(0, len(xt), batch_size):
            logits = model(xt[i : i + batch_size])
            loss_sum += float(loss_fn(logits, yt[i : i + batch_size]))
            correct += int((logits.argmax(dim=1) == yt[i : i + batch_size]).sum())
    return {"loss": loss_sum / len(xt), "accuracy": correct / len(xt), "num_samples": float(len(xt))}
