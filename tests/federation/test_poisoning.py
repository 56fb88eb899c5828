"""Robust aggregation under model poisoning: 3 of 10 sites send sign-flipped updates scaled x100.

Real digits data (scikit-learn), a softmax-regression model trained locally with numpy (fast enough to
run many rounds in a unit test), and the full protocol: every update is sealed and signed by its site
and opened and validated by the server before aggregation. Poisoned updates are finite and
well-formed, so only the aggregation rule can stop them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from bastion.crypto import sealed, signing
from bastion.data.partition import iid, split_arrays
from bastion.errors import Conflict, Invalid
from bastion.federation import strategies as S
from bastion.federation.envelope import InMemoryReplayGuard, open_update, seal_update
from bastion.federation.tensors import TensorSpec

CLIENTS, POISONED, ROUNDS = 10, 3, 10
Params = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return {"sites": split_arrays(X_tr, y_tr, iid(len(y_tr), CLIENTS, seed=1)), "test": (X_te, y_te)}


def _logits(p: Params, X: np.ndarray) -> np.ndarray:
    return X @ p["W"] + p["b"]


def _local_fit(
    p: Params, X: np.ndarray, y: np.ndarray, seed: int, epochs: int = 3, lr: float = 0.5
) -> Params:
    """Mini-batch gradient descent on the softmax cross-entropy, from the global parameters."""
    W, b = p["W"].astype(np.float64), p["b"].astype(np.float64)
    onehot = np.eye(10)[y]
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // 32)):
            z = X[idx] @ W + b
            z -= z.max(axis=1, keepdims=True)
            prob = np.exp(z)
            prob /= prob.sum(axis=1, keepdims=True)
            grad = (prob - onehot[idx]) / len(idx)
            W -= lr * X[idx].T @ grad
            b -= lr * grad.sum(axis=0)
    return {"W": W.astype(np.float32), "b": b.astype(np.float32)}


def _federate(data: dict[str, Any], strategy: S.Strategy, attack: bool) -> float:
    server = sealed.generate_private_key()
    keys = {f"site-{i}": signing.generate_signing_key() for i in range(CLIENTS)}
    participants = {pid: k.public_key() for pid, k in keys.items()}
    guard = InMemoryReplayGuard()
    params: Params = {"W": np.zeros((64, 10), np.float32), "b": np.zeros(10, np.float32)}
    spec = TensorSpec.from_tensors(params)
    for rnd in range(ROUNDS):
        strategy.begin_round(params, rnd)
        for i, (pid, key) in enumerate(keys.items()):
            X, y = data["sites"][i]
            with np.errstate(all="ignore"):
                local = _local_fit(params, X, y, seed=100 * rnd + i)
                if attack and i < POISONED:
                    local = {n: params[n] - 100.0 * (local[n] - params[n]) for n in params}
            msg = seal_update(
                local,
                federation_id="digits",
                round=rnd,
                participant_id=pid,
                num_samples=len(y),
                server_public_key=server.public_key(),
                signing_key=key,
            )
            try:
                got = open_update(
                    msg,
                    server_key=server,
                    federation_id="digits",
                    round=rnd,
                    participants=participants,
                    spec=spec,
                    replay_guard=guard,
                )
            except Invalid:  # a diverged site sends NaN/Inf: the server refuses it
                continue
            strategy.accumulate(got.tensors, got.num_samples)
        try:
            params = strategy.finalize()
        except Conflict:  # every update of the round was refused: training is dead
            break
    X_te, y_te = data["test"]
    with np.errstate(all="ignore"):
        return 100.0 * float(np.mean(_logits(params, X_te).argmax(axis=1) == y_te))


def test_robust_strategies_resist_poisoning_while_fedavg_does_not(data: dict[str, Any]) -> None:
    clean = _federate(data, S.FedAvg(), attack=False)
    assert clean > 90.0, f"clean federated accuracy too low to compare: {clean:.1f}"

    poisoned_fedavg = _federate(data, S.FedAvg(), attack=True)
    robust = {
        "median": _federate(data, S.create_strategy("median"), attack=True),
        "trimmed_mean": _federate(data, S.create_strategy("trimmed_mean", {"beta": 0.3}), attack=True),
        "krum": _federate(data, S.create_strategy("krum", {"num_byzantine": POISONED}), attack=True),
        "multikrum": _federate(
            data, S.create_strategy("multikrum", {"num_byzantine": POISONED}), attack=True
        ),
    }
    report = f"clean {clean:.1f}, poisoned fedavg {poisoned_fedavg:.1f}, " + ", ".join(
        f"{k} {v:.1f}" for k, v in robust.items()
    )
    for name, acc in robust.items():
        assert acc >= clean - 5.0, f"{name} lost more than 5 points: {report}"
    assert poisoned_fedavg < clean - 30.0, f"fedavg should collapse under poisoning: {report}"
