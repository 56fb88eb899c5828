"""What `bastion train submit --watch` / `status` print when a job ends."""

from __future__ import annotations

from bastion.cli.train import _metrics_line


def test_final_summary_shows_dqn_returns() -> None:
    """A finished DQN job printed nothing under --watch: its results have no accuracy."""
    online = {"env_id": "CartPole-v1", "mean_return": 196.0, "std_return": 22.9, "random_mean_return": 31.7}
    assert _metrics_line(online) == {"mean_return": 196.0, "std_return": 22.9, "random_mean_return": 31.7}
    offline = {"value_estimate": 9.1, "logged_policy_value": 7.5, "logged_episodes": 12}
    assert _metrics_line(offline) == {"value_estimate": 9.1, "logged_policy_value": 7.5}
