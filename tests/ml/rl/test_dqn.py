"""DQN through stable-baselines3: online on CartPole-v1, offline from a logged CartPole dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bastion.errors import Invalid
from bastion.ml.rl import dqn, policy, transitions
from tests.ml.rl.cartpole_logs import logged_cartpole


@pytest.mark.slow
def test_online_cartpole_reaches_475_over_20_episodes() -> None:
    """RL Zoo's CartPole settings, seed 0; training stops once a scored greedy policy reaches the
    environment's reward threshold (475), and the better of the best-scored and final weights is kept."""
    events: list[dict[str, Any]] = []
    model, metrics, history = dqn.train_online(dqn.Params(), lambda f, e: events.append(e), seed=0)
    assert metrics["returns"]["episodes"] == 20
    assert metrics["mean_return"] >= 475, metrics
    assert metrics["mean_return"] > metrics["random_mean_return"] + 400
    steps = metrics["total_timesteps"]
    assert [e["step"] for e in history] == list(range(1000, steps + 1, 1000)) and events == history
    assert steps <= 50_000 and metrics["selected"]["policy"] in ("final", "best_scored")
    data, config = policy.export(model, ["x", "v", "theta", "omega"], "CartPole-v1")
    loaded = policy.load(data, config)
    states = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    import torch

    with torch.no_grad():
        expected = model.q_net(torch.from_numpy(states)).numpy()
    assert np.allclose(loaded.q_values(states), expected, atol=1e-6)
    rows = [dict(zip(["x", "v", "theta", "omega"], map(float, s), strict=True)) for s in states]
    assert loaded.predict(rows).tolist() == expected.argmax(axis=1).tolist()


@pytest.mark.slow
def test_a_late_collapse_does_not_become_the_model() -> None:
    """Without the early stop, seed 0 trains all 50k steps; with this stack (torch 2.13, SB3 2.9.2,
    gymnasium 1.4) its last weights have forgotten CartPole (greedy return about 20, a random
    policy's), so the best-scored weights must be the ones kept."""
    params = dqn.Params(stop_at_threshold=False)
    model, metrics, _ = dqn.train_online(params, lambda f, e: None, seed=0)
    assert metrics["total_timesteps"] >= 50_000
    assert metrics["mean_return"] >= 475, metrics
    assert metrics["selected"]["policy"] in ("final", "best_scored")
    rows = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    assert dqn.greedy(model)(rows).shape == (4,)  # the returned model holds the selected weights


def test_offline_dqn_beats_the_logging_policy() -> None:
    frame, logged_mean = logged_cartpole(episodes=60, epsilon=0.5, seed=0)
    data = transitions.load(frame)
    params = dqn.Params(
        offline_updates=4000,
        net_arch=[64, 64],
        learning_rate=1e-3,
        target_update_interval=500,
        eval_env_id="CartPole-v1",
    )
    _, metrics, history = dqn.train_offline(data, params, lambda f, e: None, seed=0)
    assert metrics["logged_mean_return"] == pytest.approx(logged_mean, abs=1e-2)
    assert metrics["evaluation"]["mean_return"] > logged_mean + 50, (metrics, logged_mean)
    assert "direct method" in metrics["value_estimate_method"] and not metrics["conservative"]
    assert history[-1]["update"] == 4000


def test_transitions_tables_missing_columns_or_holding_nan_are_refused() -> None:
    frame, _ = logged_cartpole(episodes=2, epsilon=1.0, seed=1)
    with pytest.raises(Invalid) as exc:
        transitions.load(frame.drop(columns=["next_state_2"]))
    assert exc.value.code == "invalid_transitions" and "next_state_2" in exc.value.message
    with pytest.raises(Invalid) as exc:
        transitions.load(frame.drop(columns=["reward"]))
    assert "reward" in exc.value.message
    nan = frame.copy()
    nan.loc[3, "reward"] = float("nan")
    with pytest.raises(Invalid) as exc:
        transitions.load(nan)
    assert "reward" in exc.value.message and "NaN" in exc.value.message
    bad_action = frame.copy()
    bad_action["action"] = bad_action["action"] + 0.5
    with pytest.raises(Invalid):
        transitions.load(bad_action)
    schema = [{"name": c, "nulls": 0} for c in frame.columns]
    assert transitions.check_schema(schema) == [f"state_{i}" for i in range(4)]
    schema[frame.columns.get_loc("reward")]["nulls"] = 1
    with pytest.raises(Invalid) as exc:
        transitions.check_schema(schema)
    assert "reward" in exc.value.message


def test_policy_config_and_weights_are_checked() -> None:
    from bastion.ml.serialize import dump_torch_state

    with pytest.raises(Invalid):
        policy.load(b"\x80\x04pickle", {"feature_names": ["a"], "n_actions": 2, "net_arch": [4]})
    import torch

    state = {"0.weight": torch.zeros(4, 1), "0.bias": torch.zeros(4)}
    with pytest.raises(Invalid) as exc:
        policy.load(dump_torch_state(state), {"feature_names": ["a"], "n_actions": 2, "net_arch": [4]})
    assert "do not match" in exc.value.message
    with pytest.raises(Invalid):
        policy.load(dump_torch_state(state), {"feature_names": ["a"], "n_actions": 1, "net_arch": [4]})
