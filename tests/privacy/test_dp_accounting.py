"""The reported epsilon is dp-accounting's figure, and a budget stops the federation in time."""

from __future__ import annotations

import functools
import itertools

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from bastion.errors import Invalid
from bastion.privacy import (
    Accountant,
    BudgetExhausted,
    BudgetGuard,
    DPConfig,
    PldAccountant,
    PrivacyBudget,
    RdpAccountant,
)


@functools.lru_cache
def _reference_rdp(q: float, sigma: float, steps: int, delta: float) -> float:
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize(("q", "sigma", "steps", "delta"), [(0.1, 1.1, 50, 1e-5), (1.0, 2.0, 10, 1e-6)])
def test_reported_epsilon_equals_dp_accounting(q: float, sigma: float, steps: int, delta: float) -> None:
    acc = RdpAccountant(sigma, q)
    assert isinstance(acc, Accountant)
    reported = []
    for _ in range(steps):
        acc.step()
        reported.append(acc.epsilon(delta))
    assert reported[-1] == _reference_rdp(q, sigma, steps, delta)
    assert all(a <= b for a, b in itertools.pairwise(reported))


def test_pld_epsilon_equals_dp_accounting_and_is_tighter() -> None:
    q, sigma, steps, delta = 0.1, 1.1, 20, 1e-5
    acc = PldAccountant(sigma, q, value_discretization_interval=1e-3)
    acc.step(steps)
    ref = pld.PLDAccountant(value_discretization_interval=1e-3)
    ref.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    assert acc.epsilon(delta) == float(ref.get_epsilon(delta))
    assert acc.epsilon(delta) < _reference_rdp(q, sigma, steps, delta)


def test_zero_rounds_spend_nothing_and_bad_parameters_are_refused() -> None:
    assert RdpAccountant(1.0, 0.5).epsilon(1e-5) == 0.0
    with pytest.raises(Invalid):
        RdpAccountant(0.0, 0.5)
    with pytest.raises(Invalid):
        RdpAccountant(1.0, 1.5)
    with pytest.raises(Invalid):
        RdpAccountant(1.0, 0.5).epsilon(0.0)


def test_budget_stops_the_federation_before_it_is_exceeded() -> None:
    q, sigma, delta = 0.1, 1.1, 1e-5
    budget_eps = _reference_rdp(q, sigma, 12, delta) + 1e-9  # exactly 12 rounds fit
    guard = BudgetGuard(RdpAccountant(sigma, q), PrivacyBudget(epsilon=budget_eps, delta=delta))
    assert guard.rounds_left() == 12
    reports = []
    for _ in range(100):  # a federation configured for 100 rounds
        try:
            guard.check_next_round()
        except BudgetExhausted as exc:
            assert exc.code == "privacy_budget_exhausted"
            assert "budget" in exc.message
            break
        reports.append(guard.record_round())
    assert len(reports) == 12
    assert all(r.epsilon <= budget_eps for r in reports)
    assert reports[-1].epsilon == _reference_rdp(q, sigma, 12, delta)
    assert guard.accountant.epsilon_after(13, delta) > budget_eps
    assert guard.rounds_left() == 0 and not guard.can_run_round()


def test_guard_without_budget_only_reports() -> None:
    guard = BudgetGuard(RdpAccountant(2.0, 1.0), delta=1e-6)
    for _ in range(3):
        guard.check_next_round()
        report = guard.record_round()
    assert report.rounds == 3 and report.budget_epsilon is None
    assert report.epsilon == _reference_rdp(1.0, 2.0, 3, 1e-6)
    with pytest.raises(Invalid):
        BudgetGuard(RdpAccountant(1.0, 0.5))


def test_dp_config_builds_the_matching_guard() -> None:
    cfg = DPConfig(
        clip_norm=1.0, noise_multiplier=1.1, sampling_rate=0.1, expected_clients=5, budget_epsilon=3.0
    )
    guard = cfg.guard()
    guard.record_round()
    assert guard.report().epsilon == _reference_rdp(0.1, 1.1, 1, 1e-5)
    assert guard.budget is not None and guard.budget.epsilon == 3.0
    assert np.isclose(cfg.site_noise_std(), 1.1)
