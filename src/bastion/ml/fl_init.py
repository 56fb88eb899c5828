"""Initial weights of the federated models in NumPy, so that creating a federation never imports torch.

The server only needs the starting parameters as float32 arrays: the same names, shapes and order as
``fl_models.get_parameters(fl_models.build_model(config))``, drawn from PyTorch's default
initialisation for each layer (``nn.Linear``/``nn.Conv2d``: weight and bias uniform in
``±1/sqrt(fan_in)``, which is ``kaiming_uniform_(a=sqrt(5))``; ``nn.GroupNorm``: ones and zeros).
The draws come from NumPy's generator seeded with the federation's seed, so they are reproducible
but not bit-identical to torch's: sites train from whatever global model the server signs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.random  # loaded with this module, not by the first federation created

from bastion.ml.fl_config import BrainTumourCNNConfig, TabularMLPConfig, parse_model_config


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def _linear(rng: np.random.Generator, prefix: str, fan_in: int, fan_out: int) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": _uniform(rng, (fan_out, fan_in), fan_in),
        f"{prefix}.bias": _uniform(rng, (fan_out,), fan_in),
    }


def _mlp(cfg: TabularMLPConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    index, width = 0, cfg.in_features
    for size in cfg.hidden:
        out.update(_linear(rng, f"net.{index}", width, size))
        index += 3 if cfg.dropout else 2  # Linear, ReLU (, Dropout)
        width = size
    out.update(_linear(rng, f"net.{index}", width, cfg.num_classes))
    return out


def _cnn(cfg: BrainTumourCNNConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    width = cfg.in_channels
    for block, ch in enumerate(cfg.channels):  # Conv2d, GroupNorm, ReLU, MaxPool2d
        fan_in = width * 3 * 3
        out[f"features.{4 * block}.weight"] = _uniform(rng, (ch, width, 3, 3), fan_in)
        out[f"features.{4 * block}.bias"] = _uniform(rng, (ch,), fan_in)
        out[f"features.{4 * block + 1}.weight"] = np.ones(ch, np.float32)
        out[f"features.{4 * block + 1}.bias"] = np.zeros(ch, np.float32)
        width = ch
    out.update(_linear(rng, "head.1", width * 16, cfg.hidden))  # Flatten, Linear, ReLU, Dropout, Linear
    out.update(_linear(rng, "head.4", cfg.hidden, cfg.num_classes))
    return out


def initial_parameters(config: Mapping[str, Any], *, seed: int | None = None) -> dict[str, np.ndarray]:
    """Fresh float32 parameters for the model ``config`` describes (:class:`Invalid` if it is wrong)."""
    cfg = parse_model_config(config)
    rng = np.random.default_rng(seed)
    return _mlp(cfg, rng) if isinstance(cfg, TabularMLPConfig) else _cnn(cfg, rng)
