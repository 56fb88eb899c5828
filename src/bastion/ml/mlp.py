"""The one feed-forward network (MLP) Bastion trains, centrally and on federated sites.

Jobs (``adaptive_neural_net``, ``he_mlp``, their data-parallel and DP-SGD runs, via
:func:`bastion.ml.model_types.mlp_net.network`) and federation sites (``tabular_mlp``, via
:func:`bastion.ml.fl_models.build_model`) build this class. Its layers are ``net.0, net.1, ...``:
Linear, activation[, Dropout] per hidden layer, then the output Linear; saved state dicts,
:mod:`bastion.ml.fl_init`'s NumPy draws and the HE circuit rely on that layout.
Imports torch at top level: import this module lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "tanh", "gelu", "square", "poly"]
# Degree-2 activations a*x^2 + b*x + c that CKKS can evaluate (bastion.ml.he): plain squaring
# (CryptoNets) and 0.125x^2 + 0.5x + 0.25, a smooth ReLU stand-in common in HE work.
POLY_ACTIVATIONS: dict[str, tuple[float, float, float]] = {
    "square": (1.0, 0.0, 0.0),
    "poly": (0.125, 0.5, 0.25),
}


class PolyActivation(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.a, self.b, self.c = POLY_ACTIVATIONS[kind]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x * x + self.b * x + self.c


def _activation(kind: str) -> nn.Module:
    if kind in POLY_ACTIVATIONS:
        return PolyActivation(kind)
    result: nn.Module = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[kind]()
    return result


class MLP(nn.Module):
    """Hidden layers of the given widths, then ``n_outputs`` logits (or one regression output)."""

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int],
        n_outputs: int,
        *,
        activation: Activation = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for size in hidden:
            layers += [nn.Linear(width, size), _activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out
