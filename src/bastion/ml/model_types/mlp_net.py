"""A job's trained MLP: its numeric preprocessing, architecture, and their JSON description.

The network itself is :class:`bastion.ml.mlp.MLP`, the same one federated sites train.

Everything needed to rebuild a trained network lives in a JSON config (architecture, imputation
values, one-hot layout, scaler statistics) plus a safetensors state dict: loading never unpickles.
Imports torch at top level: import this module lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.data.dataset import Task
from bastion.errors import Invalid
from bastion.ml.mlp import MLP, Activation


class Architecture(BaseModel):
    """Shape of the network; bounds stop a tampered config from allocating absurd tensors."""

    model_config = ConfigDict(extra="forbid")

    n_inputs: int = Field(ge=1, le=100_000)
    hidden: list[int] = Field(min_length=1, max_length=8)
    n_outputs: int = Field(ge=1, le=1000)
    activation: Activation = "relu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_hidden(self) -> Architecture:
        if any(h < 1 or h > 4096 for h in self.hidden):
            raise ValueError("hidden layer sizes must be within 1..4096")
        return self


class Preprocessing(BaseModel):
    """Train-split statistics: fill values per raw column, one-hot widths, scaler per encoded column."""

    model_config = ConfigDict(extra="forbid")

    fill: list[float]
    onehot: dict[int, int] = Field(default_factory=dict)
    mean: list[float]
    scale: list[float]
    target_mean: float = 0.0
    target_scale: float = 1.0

    @property
    def n_encoded(self) -> int:
        return len(self.fill) + sum(w - 1 for w in self.onehot.values())

    @model_validator(mode="after")
    def _check_shapes(self) -> Preprocessing:
        if len(self.mean) != self.n_encoded or len(self.scale) != self.n_encoded:
            raise ValueError("scaler statistics do not match the encoded width")
        if any(i < 0 or i >= len(self.fill) or w < 1 for i, w in self.onehot.items()):
            raise ValueError("one-hot layout names a column that does not exist")
        if any(s <= 0 for s in self.scale) or self.target_scale <= 0:
            raise ValueError("scales must be positive")
        return self

    @classmethod
    def fit(cls, X: np.ndarray, onehot: dict[int, int], y: np.ndarray | None) -> Preprocessing:
        """Statistics from the training rows only; ``y`` given for regression targets."""
        fill: list[float] = []
        for j in range(X.shape[1]):
            col = X[:, j][~np.isnan(X[:, j])]
            if col.size == 0:
                fill.append(0.0)
            elif j in onehot:
                fill.append(float(np.bincount(col.astype(np.int64)).argmax()))
            else:
                fill.append(float(np.median(col)))
        encoded = _encode(X, fill, onehot)
        std = encoded.std(axis=0)
        prep = cls(
            fill=fill,
            onehot=dict(onehot),
            mean=encoded.mean(axis=0).tolist(),
            scale=np.where(std > 1e-12, std, 1.0).tolist(),
        )
        if y is not None:
            y_std = float(np.std(y))
            prep.target_mean = float(np.mean(y))
            prep.target_scale = y_std if y_std > 1e-12 else 1.0
        return prep

    def transform(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != len(self.fill):
            raise Invalid(f"expected {len(self.fill)} columns, got {X.shape[1]}")
        encoded = _encode(X, self.fill, self.onehot)
        result: np.ndarray = ((encoded - np.asarray(self.mean)) / np.asarray(self.scale)).astype(np.float32)
        return result


def _encode(X: np.ndarray, fill: list[float], onehot: dict[int, int]) -> np.ndarray:
    """Impute, then expand categorical codes into one-hot blocks (out-of-range codes: all zeros)."""
    filled = np.where(np.isnan(X), np.asarray(fill)[None, :], X)
    blocks: list[np.ndarray] = []
    for j in range(filled.shape[1]):
        width = onehot.get(j)
        if width is None:
            blocks.append(filled[:, j : j + 1])
        else:
            codes = filled[:, j].astype(np.int64)
            block = np.zeros((filled.shape[0], width))
            ok = (codes >= 0) & (codes < width)
            block[np.nonzero(ok)[0], codes[ok]] = 1.0
            blocks.append(block)
    return np.hstack(blocks) if blocks else filled


def network(arch: Architecture) -> MLP:
    """The :class:`~bastion.ml.mlp.MLP` that ``arch`` describes (fresh weights from torch's generator)."""
    return MLP(arch.n_inputs, arch.hidden, arch.n_outputs, activation=arch.activation, dropout=arch.dropout)


class TorchMLPModel:
    """A trained MLP with its preprocessing, seen through the :class:`FittedModel` interface."""

    def __init__(self, module: MLP, arch: Architecture, prep: Preprocessing, task: Task) -> None:
        self.module = module.eval()
        self.arch = arch
        self.prep = prep
        self.task = task

    def config(self) -> dict[str, Any]:
        return {"architecture": self.arch.model_dump(), "preprocessing": self.prep.model_dump()}

    def _forward(self, X: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            result: torch.Tensor = self.module(torch.from_numpy(self.prep.transform(X)))
            return result

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._forward(X)
        if self.task == "classification":
            return out.argmax(dim=1).numpy().astype(np.int64)
        return out[:, 0].double().numpy() * self.prep.target_scale + self.prep.target_mean

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.task != "classification":
            raise Invalid("this model is a regressor: it predicts values, not class probabilities")
        return torch.softmax(self._forward(X), dim=1).double().numpy()


def parse_config(config: dict[str, Any]) -> tuple[Architecture, Preprocessing]:
    try:
        arch = Architecture.model_validate(config.get("architecture"))
        prep = Preprocessing.model_validate(config.get("preprocessing"))
    except ValidationError as exc:
        raise Invalid(f"malformed network config ({exc.error_count()} errors)") from None
    if prep.n_encoded != arch.n_inputs:
        raise Invalid("network config: preprocessing width does not match the input layer")
    return arch, prep


def build_model(config: dict[str, Any], state: dict[str, torch.Tensor], task: Task) -> TorchMLPModel:
    """Rebuild the module from ``config`` and load ``state`` strictly (every tensor, right shapes)."""
    arch, prep = parse_config(config)
    module = network(arch)
    expected = module.state_dict()
    if set(state) != set(expected):
        raise Invalid("weights do not match the network described by the config")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise Invalid(
                f"weight {name!r} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
    module.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return TorchMLPModel(module, arch, prep, task)
