"""state_dict / load_state_dict: a server restarted mid-training continues exactly where it stopped."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bastion.errors import Invalid
from bastion.federation import strategies as S
from bastion.federation.strategies import StrategyState

SHAPES = {"w": (4, 6), "b": (6,)}
OPTIONS: dict[str, dict[str, Any]] = {
    "fedavg": {},
    "fedprox": {"proximal_mu": 0.1},
    "fedadam": {"eta": 0.1, "tau": 1e-2},
    "fedyogi": {"eta": 0.1, "tau": 1e-2},
    "median": {},
    "trimmed_mean": {"beta": 0.2},
    "krum": {"num_byzantine": 1},
    "multikrum": {"num_byzantine": 1},
}


def _rounds(
    n_rounds: int = 3, k: int = 6
) -> tuple[dict[str, np.ndarray], list[list[tuple[dict[str, np.ndarray], int]]]]:
    rng = np.random.default_rng(3)
    glob = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    rounds = [
        [
            (
                {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()},
                int(rng.integers(1, 100)),
            )
            for _ in range(k)
        ]
        for _ in range(n_rounds)
    ]
    return glob, rounds


def _restart(strategy: S.Strategy, name: str) -> S.Strategy:
    blob = strategy.state_dict().to_bytes()
    fresh = S.create_strategy(name, OPTIONS[name])
    fresh.load_state_dict(StrategyState.from_bytes(blob))
    return fresh


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_restart_between_and_within_rounds_is_invisible(name: str) -> None:
    glob, rounds = _rounds()

    def run(restart: bool) -> dict[str, np.ndarray]:
        s = S.create_strategy(name, OPTIONS[name])
        params = glob
        for r, updates in enumerate(rounds):
            if restart:
                s = _restart(s, name)  # between rounds
            s.begin_round(params, r)
            for i, (upd, n) in enumerate(updates):
                s.accumulate(upd, n)
                if restart and i == 2:
                    s = _restart(s, name)  # in the middle of a round
            params = s.finalize()
        return params

    straight, resumed = run(False), run(True)
    for n in SHAPES:
        np.testing.assert_array_equal(resumed[n], straight[n])


def test_server_optimizer_moments_survive_a_restart() -> None:
    glob, rounds = _rounds(n_rounds=1)
    s = S.FedAdam(OPTIONS["fedadam"])
    s.begin_round(glob, 0)
    for upd, n in rounds[0]:
        s.accumulate(upd, n)
    s.finalize()
    state = StrategyState.from_bytes(s.state_dict().to_bytes())
    assert state.meta["extra"]["steps"] == 1 and state.meta["last_round"] == 0
    assert state.tensors["m/w"].dtype == np.float64 and np.any(state.tensors["m/w"] != 0)
    fresh = S.FedAdam(OPTIONS["fedadam"])
    fresh.load_state_dict(state)
    with pytest.raises(Exception, match="not after"):
        fresh.begin_round(glob, 0)


def test_state_from_another_strategy_or_options_is_refused() -> None:
    state = S.FedAdam({"eta": 0.1}).state_dict()
    with pytest.raises(Invalid, match="belongs to strategy 'fedadam'"):
        S.FedYogi({"eta": 0.1}).load_state_dict(state)
    with pytest.raises(Invalid, match="different strategy options"):
        S.FedAdam({"eta": 0.2}).load_state_dict(state)


@pytest.mark.parametrize("blob", [b"", b"garbage" * 10, S.FedAvg().state_dict().to_bytes()[:-3]])
def test_corrupt_state_bytes_are_invalid(blob: bytes) -> None:
    with pytest.raises(Invalid):
        StrategyState.from_bytes(blob)
