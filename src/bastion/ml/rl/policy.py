"""A trained DQN policy at rest and at predict time: the Q-network as safetensors + JSON config.

SB3's own ``model.save`` writes a zip with pickled objects, which Bastion never loads; only the
Q-network's weights leave the job, and predict rebuilds the same ``Linear``/``ReLU`` stack from the
config and loads them strictly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bastion.errors import Invalid


def export(model: Any, state_names: list[str], env_id: str | None) -> tuple[bytes, dict[str, Any]]:
    from bastion.ml.serialize import dump_torch_state

    net = model.q_net.q_net
    n_actions = int(model.action_space.n)
    arch = [int(m.out_features) for m in net if m.__class__.__name__ == "Linear"][:-1]
    config = {
        "task": "reinforcement",
        "feature_names": list(state_names),
        "categories": {},
        "n_actions": n_actions,
        "net_arch": arch,
        "env_id": env_id,
    }
    return dump_torch_state(net.state_dict(), {"format": "bastion-dqn"}), config


class QPolicy:
    """Predict the greedy action and the Q-values of every action for state rows."""

    task = "reinforcement"
    classes = None

    def __init__(self, net: Any, feature_names: list[str], n_actions: int, config: dict[str, Any]) -> None:
        self.net = net.eval()
        self.feature_names = feature_names
        self.n_actions = n_actions
        self.config = config

    def _matrix(self, rows: Sequence[Mapping[str, Any]] | np.ndarray) -> np.ndarray:
        if isinstance(rows, np.ndarray):
            X = rows.astype(np.float32)
        else:
            missing = sorted({f for r in rows for f in self.feature_names if r.get(f) is None})
            if missing:
                raise Invalid(f"rows lack the state feature(s) {', '.join(missing[:10])}")
            try:
                X = np.asarray([[float(r[f]) for f in self.feature_names] for r in rows], dtype=np.float32)
            except (TypeError, ValueError):
                raise Invalid("state features must be numbers") from None
        if X.ndim != 2 or X.shape[1] != len(self.feature_names) or not np.isfinite(X).all():
            raise Invalid(f"each state needs {len(self.feature_names)} finite numbers")
        return X

    def q_values(self, rows: Sequence[Mapping[str, Any]] | np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            result: np.ndarray = self.net(torch.from_numpy(self._matrix(rows))).double().numpy()
            return result

    def predict(self, rows: Sequence[Mapping[str, Any]] | np.ndarray) -> np.ndarray:
        result: np.ndarray = self.q_values(rows).argmax(axis=1)
        return result


def load(model_bytes: bytes, config: Mapping[str, Any]) -> QPolicy:
    import torch
    from torch import nn

    from bastion.ml.serialize import load_torch_state

    names = config.get("feature_names")
    n_actions = config.get("n_actions")
    arch = config.get("net_arch")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise Invalid("DQN config lacks its state feature names")
    if not (isinstance(n_actions, int) and 2 <= n_actions <= 64):
        raise Invalid("DQN config lacks a valid number of actions")
    if not (
        isinstance(arch, list)
        and 1 <= len(arch) <= 4
        and all(isinstance(w, int) and 0 < w <= 1024 for w in arch)
    ):
        raise Invalid("DQN config lacks a valid network shape")
    layers: list[nn.Module] = []
    width = len(names)
    for w in arch:
        layers += [nn.Linear(width, w), nn.ReLU()]
        width = w
    layers.append(nn.Linear(width, n_actions))
    net = nn.Sequential(*layers)
    state = load_torch_state(model_bytes)
    expected = net.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise Invalid("weights do not match the Q-network described by the config")
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return QPolicy(net, list(names), int(n_actions), dict(config))
