"""DP-SGD on ``adaptive_neural_net``: params, learning under noise, the reported epsilon, saving."""

import itertools
import json
import subprocess
import sys
from typing import Any

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting.rdp import rdp_privacy_accountant

from bastion.data.builtin import load_dataset
from bastion.data.dataset import Dataset
from bastion.errors import Invalid
from bastion.ml import dp_sgd, model_types
from bastion.ml.model_types.mlp_net import Architecture, network
from bastion.ml.serialize import load_model, load_torch_state
from bastion.ml.split import held_out_split
from bastion.ml.train import TrainResult, train
from bastion.privacy import DPParams

torch.set_num_threads(1)

EPOCHS, BATCH = 8, 32
DP_PARAMS = {
    "epochs": EPOCHS,
    "batch_size": BATCH,
    "hidden_layers": [16],
    "importance_repeats": 0,
    "dp": {"enabled": True, "noise_multiplier": 1.1, "max_grad_norm": 1.0},
}


def _with_dp(**dp: Any) -> dict[str, Any]:
    return DP_PARAMS | {"dp": DP_PARAMS["dp"] | dp}


def _dp_accounting_epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    """dp-accounting's own figure, computed independently of Bastion's code."""
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return float(accountant.get_epsilon(delta))


@pytest.fixture(scope="module")
def cancer() -> Dataset:
    return load_dataset("breast_cancer")


@pytest.fixture(scope="module")
def run(cancer: Dataset) -> tuple[TrainResult, list[tuple[float, dict[str, Any]]]]:
    calls: list[tuple[float, dict[str, Any]]] = []
    result = train("adaptive_neural_net", cancer, DP_PARAMS, progress=lambda f, e: calls.append((f, e)))
    return result, calls


# --- params -------------------------------------------------------------------------------------


def test_dp_is_off_by_default_and_defaults_validate() -> None:
    params: Any = model_types.validate_params("adaptive_neural_net", {})
    assert params.dp.enabled is False
    on: Any = model_types.validate_params("adaptive_neural_net", {"dp": {"enabled": True}})
    assert on.dp.enabled and on.dp.noise_multiplier == 1.1 and on.dp.max_grad_norm == 1.0
    assert on.dp.delta is None and on.dp.target_epsilon is None and on.dp.secure_rng is False
    schema = model_types.get_model_type("adaptive_neural_net").params_schema()
    assert "dp" in schema["properties"]


@pytest.mark.parametrize(
    ("dp", "fragment"),
    [
        ({"enabled": True, "noise_multiplier": 0}, "'dp.noise_multiplier'"),
        ({"enabled": True, "noise_multiplier": 1e9}, "'dp.noise_multiplier'"),
        ({"enabled": True, "max_grad_norm": -1.0}, "'dp.max_grad_norm'"),
        ({"enabled": True, "max_grad_norm": 0}, "'dp.max_grad_norm'"),
        ({"enabled": True, "delta": 0.5}, "'dp.delta'"),
        ({"enabled": True, "delta": 0}, "'dp.delta'"),
        ({"enabled": True, "target_epsilon": -2}, "'dp.target_epsilon'"),
        ({"enabled": "maybe"}, "'dp.enabled'"),
        ({"enabled": True, "secure_rng": "yes please"}, "'dp.secure_rng'"),
        ({"enabled": True, "sigma": 1.0}, "unknown parameter 'dp.sigma'"),
        ({"enabled": True, "noise_multiplier": 2.0, "target_epsilon": 3.0}, "not both"),
        ({"noise_multiplier": 2.0}, "without 'enabled'"),
    ],
)
def test_bad_dp_params_are_refused_naming_the_field(dp: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Invalid, match="invalid params") as err:
        model_types.validate_params("adaptive_neural_net", {"dp": dp})
    assert fragment in err.value.message
    assert any(e["loc"][0] == "dp" for e in err.value.details["errors"])


def test_unknown_dp_field_lists_the_dp_fields() -> None:
    with pytest.raises(Invalid) as err:
        model_types.validate_params("adaptive_neural_net", {"dp": {"enabled": True, "epsilon": 1}})
    assert "valid parameters: delta, enabled, max_grad_norm, noise_multiplier" in err.value.message


def test_class_weight_with_dp_is_refused() -> None:
    with pytest.raises(Invalid, match="class_weight 'balanced' cannot be combined with dp"):
        model_types.validate_params(
            "adaptive_neural_net", {"class_weight": "balanced", "dp": {"enabled": True}}
        )
    model_types.validate_params("adaptive_neural_net", {"class_weight": "balanced"})  # fine without dp


def test_default_delta_is_a_power_of_ten_below_one_over_n() -> None:
    assert dp_sgd.default_delta(455) == 1e-5
    assert dp_sgd.default_delta(99_999) == 1e-5
    assert dp_sgd.default_delta(100_000) == 1e-6
    assert dp_sgd.default_delta(2_500_000) == 1e-7
    for n in (1, 9, 10, 11, 999, 1000, 10**6, 10**6 + 1):
        assert dp_sgd.default_delta(n) < 1 / n


def test_a_delta_not_below_one_over_n_is_refused() -> None:
    params = DPParams(enabled=True, delta=1e-3)
    assert dp_sgd.resolve_delta(params, 999) == 1e-3
    with pytest.raises(Invalid, match=r"dp\.delta") as err:
        dp_sgd.resolve_delta(params, 1000)
    assert err.value.details["field"] == "dp.delta"


def test_registry_stays_cheap_with_dp_params() -> None:
    code = (
        "import sys, bastion.ml.model_types as r\n"
        "r.validate_params('adaptive_neural_net', {'dp': {'enabled': True, 'target_epsilon': 2}})\n"
        "r.estimate_seconds('adaptive_neural_net', 100, 5, {'dp': {'enabled': True}})\n"
        "print(sorted(m for m in ('torch', 'opacus', 'dp_accounting', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dp_estimate_counts_every_epoch_and_the_slower_steps() -> None:
    plain = model_types.estimate_seconds("adaptive_neural_net", 5000, 20, {"epochs": 50})
    private = model_types.estimate_seconds(
        "adaptive_neural_net", 5000, 20, {"epochs": 50, "dp": {"enabled": True}}
    )
    assert private > 2 * plain


# --- a DP run -------------------------------------------------------------------------------------


def test_dp_run_learns_above_chance_and_reports_epsilon(run: tuple[TrainResult, list]) -> None:
    m = run[0].metrics
    # 212 malignant / 357 benign: always answering "benign" scores about 0.63.
    assert m["accuracy"] > 0.85 and m["roc_auc"] > 0.9
    dp = m["dp"]
    assert set(dp) >= {
        "epsilon", "delta", "noise_multiplier", "max_grad_norm", "sampling_rate", "steps", "accountant",
    }  # fmt: skip
    assert dp["accountant"] == "rdp"
    assert 0 < dp["epsilon"] < 50 and np.isfinite(dp["epsilon"])
    assert dp["delta"] == 1e-5  # 455 training rows: the default
    assert dp["noise_multiplier"] == 1.1 and dp["max_grad_norm"] == 1.0
    assert run[0].model_config["dp"] == dp
    json.dumps([m, run[0].model_config, run[0].history], allow_nan=False)


def test_every_training_row_is_sampled_at_rate_batch_over_n(run: tuple[TrainResult, list]) -> None:
    m = run[0].metrics
    n_train = m["training_samples"]
    assert n_train == 455  # no validation rows held back under DP
    assert m["dp"]["sampling_rate"] == BATCH / n_train
    assert m["dp"]["steps"] == EPOCHS * (n_train // BATCH)


def test_history_has_epsilon_so_far_and_no_early_stop(run: tuple[TrainResult, list]) -> None:
    result, calls = run
    history = result.history
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert (
        result.metrics["epochs_run"] == EPOCHS and result.model_config["training"]["stopped_early"] is False
    )
    eps = [h["epsilon"] for h in history]
    assert all(b > a for a, b in itertools.pairwise(eps))  # grows every epoch
    assert eps[-1] == result.metrics["dp"]["epsilon"]
    per_epoch = 455 // BATCH
    assert [h["steps"] for h in history] == [per_epoch * e for e in range(1, EPOCHS + 1)]
    q = result.metrics["dp"]["sampling_rate"]
    assert eps[2] == pytest.approx(_dp_accounting_epsilon(q, 1.1, 3 * per_epoch, 1e-5), rel=1e-9)
    assert {h["lr"] for h in history} == {0.01}  # constant: no schedule under DP
    assert all(np.isfinite(h["train_loss"]) for h in history)
    assert [e["epoch"] for _, e in calls if "epoch" in e] == list(range(1, EPOCHS + 1))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_reported_epsilon_equals_dp_accounting_for_the_same_mechanism(run: tuple[TrainResult, list]) -> None:
    dp = run[0].metrics["dp"]
    q, sigma, steps, delta = dp["sampling_rate"], dp["noise_multiplier"], dp["steps"], dp["delta"]
    expected = _dp_accounting_epsilon(q, sigma, steps, delta)
    assert dp["epsilon"] == pytest.approx(expected, rel=1e-9, abs=0)
    # The comparison discriminates: Opacus's make_private rate (1 / batches per epoch), one step
    # more or less, or a slightly different sigma each move epsilon far beyond the tolerance.
    for other in (
        _dp_accounting_epsilon(1 / -(-455 // BATCH), sigma, steps, delta),
        _dp_accounting_epsilon(q, sigma, steps + 1, delta),
        _dp_accounting_epsilon(q, sigma * 1.01, steps, delta),
    ):
        assert abs(other - dp["epsilon"]) > 1e-4 * dp["epsilon"]


def test_opacus_own_accountant_agrees_with_the_reported_epsilon(run: tuple[TrainResult, list]) -> None:
    from opacus.accountants import RDPAccountant

    dp = run[0].metrics["dp"]
    opacus_accountant = RDPAccountant()
    opacus_accountant.history = [(dp["noise_multiplier"], dp["sampling_rate"], dp["steps"])]
    orders = list(rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
    # Same orders, same conversion; fractional-order RDP differs in the fifth significant digit.
    assert opacus_accountant.get_epsilon(dp["delta"], alphas=orders) == pytest.approx(dp["epsilon"], rel=1e-3)


def test_epsilon_grows_with_epochs_and_shrinks_with_noise(
    cancer: Dataset, run: tuple[TrainResult, list]
) -> None:
    base = run[0].metrics["dp"]["epsilon"]
    fewer = train("adaptive_neural_net", cancer, DP_PARAMS | {"epochs": 3}).metrics["dp"]
    noisier = train("adaptive_neural_net", cancer, _with_dp(noise_multiplier=2.5)).metrics["dp"]
    assert fewer["steps"] == 3 * (455 // BATCH)
    assert fewer["epsilon"] < base
    assert fewer["epsilon"] == run[0].history[2]["epsilon"]  # same mechanism after three epochs
    assert noisier["noise_multiplier"] == 2.5 and noisier["steps"] == run[0].metrics["dp"]["steps"]
    assert noisier["epsilon"] < base / 2


def test_target_epsilon_chooses_sigma_just_below_the_target(cancer: Dataset) -> None:
    result = train(
        "adaptive_neural_net",
        cancer,
        DP_PARAMS | {"epochs": 4, "dp": {"enabled": True, "target_epsilon": 2.0}},
    )
    dp = result.metrics["dp"]
    assert dp["target_epsilon"] == 2.0
    assert 1.98 <= dp["epsilon"] <= 2.0
    expected = _dp_accounting_epsilon(dp["sampling_rate"], dp["noise_multiplier"], dp["steps"], dp["delta"])
    assert dp["epsilon"] == pytest.approx(expected, rel=1e-9)
    # A slightly smaller sigma would overshoot the target: the search did not pick more noise than needed.
    lower = _dp_accounting_epsilon(
        dp["sampling_rate"], dp["noise_multiplier"] * 0.98, dp["steps"], dp["delta"]
    )
    assert lower > 2.0
    assert result.metrics["accuracy"] > 0.8


def test_an_unreachable_target_epsilon_is_refused() -> None:
    with pytest.raises(Invalid, match=r"dp\.target_epsilon"):
        dp_sgd.noise_for_epsilon(1e-3, 1.0, 1000, 1e-5)


def test_noise_is_not_replayable_from_the_job_seed(cancer: Dataset) -> None:
    params = DP_PARAMS | {"epochs": 1}
    a = train("adaptive_neural_net", cancer, params, seed=5)
    b = train("adaptive_neural_net", cancer, params, seed=5)
    assert a.model_bytes != b.model_bytes  # same seed, same init: only the DP noise and sampling differ
    assert a.metrics["dp"]["epsilon"] == b.metrics["dp"]["epsilon"]


def test_dp_regression_runs_and_reports_epsilon() -> None:
    result = train("adaptive_neural_net", load_dataset("diabetes"), DP_PARAMS)
    dp = result.metrics["dp"]
    assert dp["sampling_rate"] == BATCH / result.metrics["training_samples"]
    assert dp["epsilon"] == pytest.approx(
        _dp_accounting_epsilon(dp["sampling_rate"], 1.1, dp["steps"], dp["delta"]), rel=1e-9
    )
    assert result.metrics["r2"] > 0.0  # better than predicting the mean
    assert "val_rmse" not in result.history[0] and "epsilon" in result.history[0]


# --- saving ---------------------------------------------------------------------------------------


def test_dp_model_saves_unwrapped_and_loads_with_the_safe_path(
    cancer: Dataset, run: tuple[TrainResult, list]
) -> None:
    result = run[0]
    assert result.model_format == "safetensors"
    state = load_torch_state(result.model_bytes)
    assert not any(k.startswith("_module.") for k in state)
    arch = Architecture.model_validate(result.model_config["architecture"])
    assert set(state) == set(network(arch).state_dict())
    predictor = load_model(
        result.model_bytes, result.model_format, json.loads(json.dumps(result.model_config))
    )
    split = held_out_split(cancer, 0.2, 0)
    X_test, y_test = split.test(cancer)
    predicted = predictor.model.predict(X_test)
    assert float((predicted == y_test).mean()) == pytest.approx(result.metrics["accuracy"], abs=1e-6)
    proba = predictor.model.predict_proba(X_test)
    assert proba.shape == (len(y_test), 2) and np.allclose(proba.sum(axis=1), 1.0)


# --- secure randomness -----------------------------------------------------------------------------


def test_secure_rng_run_reports_epsilon(cancer: Dataset) -> None:
    result = train("adaptive_neural_net", cancer, _with_dp(secure_rng=True) | {"epochs": 3})
    dp = result.metrics["dp"]
    assert dp["secure_rng"] is True
    assert dp["epsilon"] == pytest.approx(
        _dp_accounting_epsilon(dp["sampling_rate"], 1.1, dp["steps"], dp["delta"]), rel=1e-9
    )
    assert result.metrics["accuracy"] > 0.8


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_secure_noise_has_std_sigma_times_c() -> None:
    """Zero gradients, batch of one, SGD with rate 1: the step is exactly minus the noise."""
    layer = torch.nn.Linear(4000, 1, bias=False)
    torch.nn.init.zeros_(layer.weight)
    optimizer_cls = dp_sgd._secure_optimizer_class()
    from opacus import GradSampleModule

    wrapped = GradSampleModule(layer)
    optimizer = optimizer_cls(
        torch.optim.SGD(layer.parameters(), lr=1.0), noise_multiplier=2.0, max_grad_norm=0.5,
        expected_batch_size=1,
    )  # fmt: skip
    loss = (wrapped(torch.zeros(1, 4000)) * 0.0).sum()
    loss.backward()
    optimizer.step()
    step = layer.weight.detach().numpy().ravel()
    assert abs(step.std() - 1.0) < 0.06  # sigma * C = 1; sd of the estimate about 0.011
    assert abs(step.mean()) < 0.08  # sd about 0.016
    wrapped.cleanup()


def test_secure_sampler_is_poisson_at_rate_q() -> None:
    sampler = dp_sgd._poisson_sampler(1000, 0.05, 200, None, secure=True)
    batches = list(sampler)
    assert len(batches) == 200
    sizes = np.array([len(b) for b in batches])
    assert abs(sizes.mean() - 50) < 2.5  # sd of the mean is about 0.49
    assert all(len(set(b)) == len(b) and all(0 <= i < 1000 for i in b) for b in batches)
    assert len({tuple(b) for b in batches}) == 200
