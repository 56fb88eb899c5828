"""``adaptive_neural_net``: a PyTorch MLP whose learning rate adapts to the validation loss.

The seeds' "adaptive" network, made concrete: ReduceLROnPlateau lowers the rate when the validation
loss stalls, early stopping ends training when it stops improving and restores the best weights, and
every epoch is reported (loss, validation score, learning rate) as history and progress.

With ``dp.enabled`` the network is trained with DP-SGD instead (see :mod:`bastion.ml.dp_sgd`), and
the validation machinery is switched off on purpose: early stopping, best-weights restore and
ReduceLROnPlateau all steer training by the validation loss, a non-private function of the validation
rows, and stopping at a data-dependent epoch would also make the epsilon of the epochs actually run an
unsound figure. So a DP run uses *all* training rows for DP-SGD (no validation split), keeps the
learning rate constant, runs exactly ``epochs`` epochs and keeps the final weights; ``patience``,
``lr_patience``, ``lr_factor``, ``min_lr`` and ``validation_fraction`` are ignored, and the history
has ``epsilon`` (so far) and ``steps`` instead of validation scores. ``class_weight: balanced`` is
refused with DP: its weights are computed from the training labels, which would make the loss itself
depend on every row outside the per-row clipping.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from bastion.ml.base import FitContext, FitOutput, Progress
from bastion.ml.params import CommonParams
from bastion.privacy.config import DPParams

DESCRIPTION = (
    "PyTorch MLP with an adaptive learning rate (ReduceLROnPlateau) and early stopping on a "
    "validation split; per-epoch history"
)
TASKS = ("classification", "regression")
DP_STEP_FACTOR = 3.0  # a DP-SGD step over a plain one, measured on small MLPs (see estimate_seconds)


class Params(CommonParams):
    hidden_layers: list[int] = Field(
        default_factory=lambda: [64, 32], min_length=1, max_length=8, description="Hidden layer widths"
    )
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(0.1, ge=0.0, le=0.9)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(1e-2, gt=0.0, le=1.0, description="Initial learning rate")
    weight_decay: float = Field(1e-4, ge=0.0, le=0.1)
    batch_size: int = Field(32, ge=1, le=4096)
    epochs: int = Field(100, ge=1, le=1000, description="Upper bound; early stopping usually ends sooner")
    patience: int = Field(15, ge=1, le=200, description="Epochs without improvement before stopping")
    lr_patience: int = Field(5, ge=1, le=100, description="Stalled epochs before the rate is reduced")
    lr_factor: float = Field(0.5, ge=0.05, le=0.95, description="Multiplier applied to the rate")
    min_lr: float = Field(1e-5, ge=0.0, le=0.1)
    validation_fraction: float = Field(0.15, ge=0.05, le=0.5, description="Of the training rows")
    class_weight: Literal["balanced"] | None = None
    num_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Data-parallel workers (Ray Train TorchTrainer); above 1 needs the Ray executor",
    )
    dp: DPParams = Field(
        default_factory=DPParams,
        description=(
            "Differentially private training (DP-SGD via Opacus); when enabled, early stopping, the "
            "learning-rate schedule and the validation split are off"
        ),
    )

    @field_validator("hidden_layers")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 or w > 1024 for w in v):
            raise ValueError("each hidden layer width must be within 1..1024")
        return v

    @field_validator("dp")
    @classmethod
    def _dp_compatible(cls, v: DPParams, info: ValidationInfo) -> DPParams:
        if v.enabled and int(info.data.get("num_workers") or 1) > 1:
            raise ValueError("dp cannot be combined with num_workers above 1; train DP-SGD on one worker")
        if v.enabled and info.data.get("class_weight") is not None:
            raise ValueError(
                "class_weight 'balanced' cannot be combined with dp: the weights come from the "
                "training labels; leave class_weight unset"
            )
        return v


def _validation_split(y: np.ndarray, fraction: float, classify: bool, seed: int) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    stratify = y if classify and np.bincount(y).min() >= 2 else None
    try:
        parts: tuple[Any, Any] = train_test_split(
            idx, test_size=fraction, random_state=seed, stratify=stratify
        )
        return parts
    except ValueError:
        parts = train_test_split(idx, test_size=fraction, random_state=seed)
        return parts


def fit(
    X: np.ndarray, y: np.ndarray, ctx: FitContext, params: Params, progress: Progress, seed: int
) -> FitOutput:
    import torch

    from bastion.ml.model_types.mlp_net import Architecture, Preprocessing, TorchMLPModel, network

    classify = ctx.task == "classification"
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    private = params.dp.enabled
    if private:  # every training row goes to DP-SGD; nothing is held back for validation
        tr, va = np.arange(len(y)), np.arange(0)
    else:
        tr, va = _validation_split(y, params.validation_fraction, classify, seed)
    onehot = {i: len(ctx.spec.categories[ctx.spec.feature_names[i]]) for i in ctx.spec.categorical_indices}
    prep = Preprocessing.fit(X[tr], onehot, None if classify else y[tr])
    Xt, Xv = torch.from_numpy(prep.transform(X[tr])), torch.from_numpy(prep.transform(X[va]))
    if classify:
        yt, yv = torch.from_numpy(y[tr].astype(np.int64)), torch.from_numpy(y[va].astype(np.int64))
        weight = None
        if params.class_weight == "balanced":
            counts = np.bincount(y[tr], minlength=ctx.n_classes).astype(np.float64)
            weight = torch.tensor(len(tr) / (ctx.n_classes * np.maximum(counts, 1.0)), dtype=torch.float32)
        loss_fn: torch.nn.Module = torch.nn.CrossEntropyLoss(weight=weight)
    else:
        scaled = (y - prep.target_mean) / prep.target_scale
        yt = torch.from_numpy(scaled[tr].astype(np.float32))[:, None]
        yv = torch.from_numpy(scaled[va].astype(np.float32))[:, None]
        loss_fn = torch.nn.MSELoss()

    arch = Architecture(
        n_inputs=prep.n_encoded,
        hidden=list(params.hidden_layers),
        n_outputs=ctx.n_classes if classify else 1,
        activation=params.activation,
        dropout=params.dropout,
    )
    if params.num_workers > 1 and not private:
        from bastion.ml.distributed import fit_data_parallel

        data = {"Xt": Xt, "yt": yt, "Xv": Xv, "yv": yv, "loss_fn": loss_fn}
        return fit_data_parallel(arch, prep, data, params, progress, seed, ctx)
    module = network(arch)
    optimizer = make_optimizer(module, params)
    if private:
        return _fit_private(module, optimizer, loss_fn, Xt, yt, params, progress, arch, prep, ctx)
    history, best_epoch, best_state = train_epochs(
        module, module, optimizer, loss_fn, Xt, yt, Xv, yv, params, gen, prep.target_scale, classify, progress
    )
    if best_state is not None:
        module.load_state_dict(best_state)
    stopped_early = len(history) < params.epochs
    progress(1.0, {"stage": "fitted", "epochs_run": len(history), "best_epoch": best_epoch})
    model = TorchMLPModel(module, arch, prep, ctx.task)
    config = model.config() | {
        "training": {"epochs_run": len(history), "best_epoch": best_epoch, "stopped_early": stopped_early}
    }
    return FitOutput(model=model, config=config, history=history)


def make_optimizer(module: Any, params: Params) -> Any:
    import torch

    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[params.optimizer]
    extra: dict[str, Any] = {"momentum": 0.9} if params.optimizer == "sgd" else {}
    return opt_cls(module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay, **extra)


def train_epochs(
    module: Any,
    forward: Any,
    optimizer: Any,
    loss_fn: Any,
    Xt: Any,
    yt: Any,
    Xv: Any,
    yv: Any,
    params: Params,
    gen: Any,
    target_scale: float,
    classify: bool,
    progress: Progress,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[dict[str, Any]], int, dict[str, Any] | None]:
    """The epochs of a plain (non-DP) run: shuffled mini-batches, validation, LR schedule, early stop.

    ``forward`` is the module, or its DistributedDataParallel wrapper on a data-parallel worker;
    ``shard = (rank, world)`` makes each worker take every ``world``-th row of each batch, so the
    averaged gradient equals that of the whole batch. Every worker sees the same validation rows and
    (after each synchronised step) the same weights, so all take the same early-stopping decision.
    """
    import torch

    rank, world = shard
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=params.lr_factor, patience=params.lr_patience, min_lr=params.min_lr
    )
    history: list[dict[str, Any]] = []
    best_loss, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(1, params.epochs + 1):
        forward.train()
        order = torch.randperm(len(Xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            mine = batch[rank::world] if len(batch) >= world else batch[:1]
            optimizer.zero_grad()
            loss = loss_fn(forward(Xt[mine]), yt[mine])
            loss.backward()
            optimizer.step()
            total += float(loss.item()) * len(batch)
        module.eval()
        with torch.no_grad():
            out = module(Xv)
            val_loss = float(loss_fn(out, yv).item())
        event: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": round(total / len(order), 6),
            "val_loss": round(val_loss, 6),
            "lr": float(optimizer.param_groups[0]["lr"]),
        }
        if classify:
            event["val_accuracy"] = round(float((out.argmax(dim=1) == yv).float().mean().item()), 6)
        else:
            event["val_rmse"] = round(float(torch.sqrt(((out - yv) ** 2).mean()).item()) * target_scale, 6)
        scheduler.step(val_loss)
        history.append(event)
        progress(epoch / params.epochs, event)
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        elif epoch - best_epoch >= params.patience:
            break
    return history, best_epoch, best_state


def _fit_private(
    module: Any,
    optimizer: Any,
    loss_fn: Any,
    Xt: Any,
    yt: Any,
    params: Params,
    progress: Progress,
    arch: Any,
    prep: Any,
    ctx: FitContext,
) -> FitOutput:
    """DP-SGD over every training row for exactly ``params.epochs`` epochs; see the module docstring."""
    from bastion.ml.dp_sgd import train_private
    from bastion.ml.model_types.mlp_net import TorchMLPModel

    history: list[dict[str, Any]] = []
    lr = float(optimizer.param_groups[0]["lr"])

    def epoch_end(epoch: int, train_loss: float, epsilon: float, steps: int) -> None:
        event = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "lr": lr,
            "epsilon": epsilon,
            "steps": steps,
        }
        history.append(event)
        progress(epoch / params.epochs, event)

    report = train_private(
        module,
        optimizer,
        loss_fn,
        Xt,
        yt,
        batch_size=params.batch_size,
        epochs=params.epochs,
        dp=params.dp,
        epoch_end=epoch_end,
    )
    dp = report.to_dict()
    progress(1.0, {"stage": "fitted", "epochs_run": len(history), "epsilon": report.epsilon})
    model = TorchMLPModel(module, arch, prep, ctx.task)
    training = {
        "epochs_run": len(history),
        "best_epoch": len(history),
        "stopped_early": False,
        "early_stopping": False,
        "lr_schedule": "constant",
    }
    config = model.config() | {"training": training, "dp": dp}
    return FitOutput(model=model, config=config, history=history, metrics={"dp": dp})


def estimate_seconds(n_samples: int, n_features: int, params: Params) -> float:
    """Rough seconds on one busy CPU core; an upper bound, as it assumes no early stop.

    Small networks are dominated by torch's per-step overhead (a few ms on a shared 2-core VM).
    DP-SGD trains on every training row (no validation split), always runs all epochs, and computes
    per-sample gradients, clips them and draws noise: about DP_STEP_FACTOR times a plain step.
    """
    from bastion.ml.model_types.sk_common import STARTUP_SECONDS

    widths = [n_features, *params.hidden_layers, 10]
    weights = sum(a * b for a, b in itertools.pairwise(widths))
    rows = n_samples * (1.0 - params.test_size)
    held_back = 0.0 if params.dp.enabled else params.validation_fraction
    batches = max(1.0, rows * (1.0 - held_back) / params.batch_size)
    per_batch = 4e-3 + 6 * weights * params.batch_size * 1e-9
    if params.dp.enabled:
        per_batch *= DP_STEP_FACTOR
    return STARTUP_SECONDS + params.epochs * batches * per_batch
