"""Each strategy's maths against a direct numpy computation on the same updates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from bastion.errors import Conflict, Invalid
from bastion.federation import strategies as S
from bastion.federation.strategies import buffered

SHAPES = {"w": (3, 5), "big": (70_001,), "cube": (2, 2, 2)}  # "big" spans several accumulation chunks
K = 7


def _params(rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {n: (rng.standard_normal(s) * scale).astype(np.float32) for n, s in SHAPES.items()}


@pytest.fixture
def round_data() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]], list[int]]:
    rng = np.random.default_rng(42)
    glob = _params(rng)
    updates = [
        {n: glob[n] + 0.1 * rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
        for _ in range(K)
    ]
    samples = [int(n) for n in rng.integers(5, 500, size=K)]
    return glob, updates, samples


def _run(
    strategy: S.Strategy,
    glob: dict[str, np.ndarray],
    updates: list[dict[str, np.ndarray]],
    samples: list[int],
    round: int = 0,
) -> dict[str, np.ndarray]:
    strategy.begin_round(glob, round)
    for upd, n in zip(updates, samples, strict=True):
        strategy.accumulate(upd, n)
    return strategy.finalize()


def _stack(updates: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
    return np.stack([u[name].astype(np.float64) for u in updates])


def _weighted_mean(updates: list[dict[str, np.ndarray]], samples: list[int], name: str) -> np.ndarray:
    w = np.asarray(samples, np.float64)
    return np.tensordot(w / w.sum(), _stack(updates, name), axes=1)


@pytest.mark.parametrize("accumulator", ["float64", "float32"])
def test_fedavg_is_the_sample_weighted_mean(round_data: Any, accumulator: str) -> None:
    glob, updates, samples = round_data
    out = _run(S.create_strategy("fedavg", {"accumulator": accumulator}), glob, updates, samples)
    tol = 1e-6 if accumulator == "float64" else 1e-5
    for name in SHAPES:
        assert out[name].dtype == np.float32 and out[name].shape == SHAPES[name]
        np.testing.assert_allclose(out[name], _weighted_mean(updates, samples, name), rtol=tol, atol=tol)


def test_fedavg_does_not_modify_inputs(round_data: Any) -> None:
    glob, updates, samples = round_data
    before = [{n: a.copy() for n, a in u.items()} for u in updates]
    _run(S.FedAvg(), glob, updates, samples)
    for u, b in zip(updates, before, strict=True):
        for n in SHAPES:
            np.testing.assert_array_equal(u[n], b[n])


def test_fedprox_aggregates_like_fedavg_and_tells_sites_mu(round_data: Any) -> None:
    glob, updates, samples = round_data
    prox = S.create_strategy("fedprox", {"proximal_mu": 0.3})
    assert prox.client_config() == {"proximal_mu": 0.3}
    assert S.FedAvg().client_config() == {}
    out = _run(prox, glob, updates, samples)
    ref = _run(S.FedAvg(), glob, updates, samples)
    for name in SHAPES:
        np.testing.assert_array_equal(out[name], ref[name])


def _server_opt_reference(
    glob: dict[str, np.ndarray],
    rounds: list[tuple[list[dict[str, np.ndarray]], list[int]]],
    yogi: bool,
    eta: float,
    b1: float,
    b2: float,
    tau: float,
) -> dict[str, np.ndarray]:
    x = {n: a.astype(np.float64) for n, a in glob.items()}
    m = {n: np.zeros_like(a) for n, a in x.items()}
    v = {n: np.full_like(a, tau**2) for n, a in x.items()}
    for updates, samples in rounds:
        for n in x:
            delta = _weighted_mean(updates, samples, n) - x[n]
            m[n] = b1 * m[n] + (1 - b1) * delta
            if yogi:
                v[n] = v[n] - (1 - b2) * delta**2 * np.sign(v[n] - delta**2)
            else:
                v[n] = b2 * v[n] + (1 - b2) * delta**2
            x[n] = (x[n] + eta * m[n] / (np.sqrt(v[n]) + tau)).astype(np.float32).astype(np.float64)
    return {n: a.astype(np.float32) for n, a in x.items()}


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_server_optimizers_follow_reddi_et_al(round_data: Any, name: str) -> None:
    glob, updates, samples = round_data
    opts = {"eta": 0.05, "beta1": 0.8, "beta2": 0.95, "tau": 1e-2}
    rng = np.random.default_rng(7)
    second = [
        {n: u[n] + 0.05 * rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
        for u in updates
    ]
    strategy = S.create_strategy(name, opts)
    x1 = _run(strategy, glob, updates, samples, round=0)
    x2 = _run(strategy, x1, second, samples, round=1)
    ref = _server_opt_reference(
        glob, [(updates, samples), (second, samples)], name == "fedyogi", 0.05, 0.8, 0.95, 1e-2
    )
    for n in SHAPES:
        np.testing.assert_allclose(x2[n], ref[n], rtol=1e-5, atol=1e-6)


def test_adam_and_yogi_differ(round_data: Any) -> None:
    glob, updates, samples = round_data
    a = _run(S.FedAdam({"tau": 1e-3}), glob, updates, samples)
    y = _run(S.FedYogi({"tau": 1e-3}), glob, updates, samples)
    assert not np.allclose(a["big"], y["big"])


@pytest.fixture(params=[None, 4096])
def slab(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the robust strategies both in one block and in many small column blocks."""
    if request.param is not None:
        monkeypatch.setattr(buffered, "SLAB_BYTES", request.param)


def test_median_is_coordinate_wise(round_data: Any, slab: None) -> None:
    glob, updates, samples = round_data
    out = _run(S.create_strategy("median"), glob, updates, samples)
    for name in SHAPES:
        np.testing.assert_allclose(out[name], np.median(_stack(updates, name), axis=0), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("beta", [0.0, 0.15, 0.3, 0.45])
def test_trimmed_mean_matches_scipy(round_data: Any, slab: None, beta: float) -> None:
    glob, updates, samples = round_data
    out = _run(S.create_strategy("trimmed_mean", {"beta": beta}), glob, updates, samples)
    for name in SHAPES:
        ref = stats.trim_mean(_stack(updates, name), beta, axis=0)
        np.testing.assert_allclose(out[name], ref, rtol=1e-6, atol=1e-6)


def _krum_scores(updates: list[dict[str, np.ndarray]], f: int) -> np.ndarray:
    flat = np.stack([np.concatenate([u[n].astype(np.float64).ravel() for n in SHAPES]) for u in updates])
    d = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(axis=2)
    k = len(updates) - f - 2
    return np.array([np.sort(np.delete(d[i], i))[:k].sum() for i in range(len(updates))])


def test_krum_picks_the_update_with_the_closest_neighbours(round_data: Any, slab: None) -> None:
    glob, updates, samples = round_data
    krum = S.create_strategy("krum", {"num_byzantine": 2})
    assert isinstance(krum, S.Krum)
    krum.begin_round(glob, 0)
    for u, n in zip(updates, samples, strict=True):
        krum.accumulate(u, n)
    ref = _krum_scores(updates, 2)
    np.testing.assert_allclose(krum.scores(), ref, rtol=1e-6)
    out = krum.finalize()
    best = int(np.argmin(ref))
    assert krum.last_selected == [best]
    for name in SHAPES:
        np.testing.assert_array_equal(out[name], updates[best][name])


def test_multikrum_averages_the_best_m(round_data: Any, slab: None) -> None:
    glob, updates, samples = round_data
    strategy = S.create_strategy("multikrum", {"num_byzantine": 2})
    out = _run(strategy, glob, updates, samples)
    chosen = list(np.argsort(_krum_scores(updates, 2), kind="stable")[: K - 2])
    assert isinstance(strategy, S.Krum) and strategy.last_selected == chosen
    sel = [updates[i] for i in chosen]
    for name in SHAPES:
        np.testing.assert_allclose(
            out[name], _weighted_mean(sel, [samples[i] for i in chosen], name), rtol=1e-6, atol=1e-7
        )


def test_krum_needs_enough_updates(round_data: Any) -> None:
    glob, updates, samples = round_data
    with pytest.raises(Conflict, match="at least 9") as info:
        _run(S.Krum({"num_byzantine": 3}), glob, updates, samples)
    assert info.value.code == "not_enough_updates"
    with pytest.raises(Conflict):
        _run(S.Krum({"num_byzantine": 1, "num_selected": 7}), glob, updates, samples)


def test_streaming_flags() -> None:
    streaming = {n for n, cls in S.STRATEGIES.items() if not cls.needs_all_updates}
    assert streaming == {"fedavg", "fedprox", "fedadam", "fedyogi"}


def test_registry_and_option_validation() -> None:
    assert S.available_strategies() == sorted(S.STRATEGIES)
    with pytest.raises(Invalid, match="unknown aggregation strategy 'fedsgd'"):
        S.create_strategy("fedsgd")
    with pytest.raises(Invalid, match="momentum") as info:
        S.create_strategy("fedadam", {"momentum": 0.9})
    assert info.value.code == "invalid_strategy_options"
    bad: list[tuple[str, dict[str, Any]]] = [
        ("trimmed_mean", {"beta": 0.5}),
        ("fedprox", {"proximal_mu": -1}),
        ("fedadam", {"beta2": 1.0}),
        ("krum", {"num_byzantine": -1}),
        ("fedavg", {"accumulator": "float16"}),
        ("median", {"beta": 0.1}),
    ]
    for name, options in bad:
        with pytest.raises(Invalid):
            S.create_strategy(name, options)


def test_round_lifecycle_errors(round_data: Any) -> None:
    glob, updates, _ = round_data
    s = S.FedAvg()
    with pytest.raises(Conflict, match="no round is open"):
        s.accumulate(updates[0], 10)
    s.begin_round(glob, 3)
    with pytest.raises(Conflict, match="no updates"):
        s.finalize()
    with pytest.raises(Invalid, match="num_samples"):
        s.accumulate(updates[0], 0)
    with pytest.raises(Invalid, match="'w' has shape"):
        s.accumulate({**updates[0], "w": np.zeros((5, 3), np.float32)}, 10)
    with pytest.raises(Invalid, match="do not match"):
        s.accumulate({"w": updates[0]["w"]}, 10)
    s.accumulate(updates[0], 10)
    assert s.num_updates == 1 and s.round == 3
    s.finalize()
    assert s.round is None
    with pytest.raises(Conflict, match="not after"):
        s.begin_round(glob, 3)
    s.begin_round(glob, 4)
