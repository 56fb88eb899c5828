"""The privacy wrapper strategy: unweighted mean of (clipped) deltas, fixed denominator, noise once."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import Invalid
from bastion.federation.strategies import create_strategy
from bastion.federation.strategies.base import StrategyState
from bastion.federation.strategies.private import PrivateAggregate

GLOBAL = {"a": np.zeros((2, 2), np.float32), "b": np.ones(3, np.float32)}


def moved(delta: float) -> dict[str, np.ndarray]:
    return {k: v + np.float32(delta) for k, v in GLOBAL.items()}


def test_the_mean_ignores_sample_counts_and_uses_the_fixed_denominator() -> None:
    strategy = PrivateAggregate(create_strategy("fedavg"), {"denominator": 4})
    strategy.begin_round(GLOBAL, 1)
    strategy.accumulate(moved(0.4), 1000)
    strategy.accumulate(moved(0.8), 1)
    out = strategy.finalize()
    np.testing.assert_allclose(out["a"], np.full((2, 2), 0.3), atol=1e-6)  # (0.4 + 0.8) / 4
    np.testing.assert_allclose(out["b"], np.full(3, 1.3), atol=1e-6)


def test_each_delta_is_clipped_to_the_l2_bound() -> None:
    strategy = PrivateAggregate(create_strategy("fedavg"), {"clip_norm": 1.0})
    strategy.begin_round(GLOBAL, 1)
    strategy.accumulate(moved(10.0), 1)
    out = strategy.finalize()
    delta = np.concatenate([(out[k] - GLOBAL[k]).ravel() for k in sorted(GLOBAL)])
    assert np.linalg.norm(delta) == pytest.approx(1.0, rel=1e-5)


def test_a_secure_sum_counts_as_its_number_of_sites_and_central_noise_is_added() -> None:
    strategy = PrivateAggregate(create_strategy("fedavg"), {"noise_std": 0.5})
    strategy.begin_round(GLOBAL, 1)
    strategy.add_sum(np.full(7, 0.9), 3)
    out = strategy.finalize()
    delta = np.concatenate([(out[k] - GLOBAL[k]).ravel() for k in sorted(GLOBAL)])
    assert not np.allclose(delta, 0.3)  # noised
    assert np.all(np.abs(delta - 0.3) < 6 * 0.5 / 3)
    with pytest.raises(Invalid):
        strategy.begin_round(GLOBAL, 2)
        strategy.add_sum(np.full(6, 0.9), 3)


def test_fedadam_inside_the_wrapper_keeps_its_moments_across_a_saved_state() -> None:
    strategy = PrivateAggregate(create_strategy("fedadam"), {"denominator": 2})
    strategy.begin_round(GLOBAL, 1)
    strategy.accumulate(moved(0.2), 1)
    first = strategy.finalize()
    state = StrategyState.from_bytes(strategy.state_dict().to_bytes())
    twin = PrivateAggregate(create_strategy("fedadam"), {"denominator": 2})
    twin.load_state_dict(state)
    for s in (strategy, twin):
        s.begin_round(first, 2)
        s.accumulate({k: v + np.float32(0.1) for k, v in first.items()}, 1)
    a, b = strategy.finalize(), twin.finalize()
    for k in GLOBAL:
        np.testing.assert_array_equal(a[k], b[k])


def test_strategies_that_need_every_update_cannot_be_wrapped() -> None:
    with pytest.raises(Invalid):
        PrivateAggregate(create_strategy("median"))
