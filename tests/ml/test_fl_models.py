"""Federated models: built from JSON config, parameters as numpy dicts, local fit with FedProx."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from bastion.data.mri import synthetic_mri
from bastion.errors import Invalid
from bastion.federation.tensors import decode, encode
from bastion.ml import fl_models as M
from bastion.ml.mlp import MLP as TorchMLP

MLP = {"type": "tabular_mlp", "in_features": 30, "num_classes": 2, "hidden": [16]}
CNN = {"type": "brain_tumour_cnn"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def test_models_build_from_config_and_have_the_right_outputs() -> None:
    mlp = M.build_model(MLP)
    assert isinstance(mlp, TorchMLP)  # the one network jobs train too
    assert mlp(torch.zeros(5, 30)).shape == (5, 2)
    cnn = M.build_model(CNN)
    assert isinstance(cnn, M.BrainTumourCNN)
    assert cnn(torch.zeros(2, 1, 128, 128)).shape == (2, len(M.MRI_CLASSES))
    small = M.build_model(
        {"type": "brain_tumour_cnn", "image_size": 64, "channels": [4, 8], "in_channels": 3}
    )
    assert small(torch.zeros(1, 3, 64, 64)).shape == (1, 4)


@pytest.mark.parametrize(
    "config",
    [
        {"type": "resnet"},
        {"type": "tabular_mlp", "in_features": 30},
        {"type": "tabular_mlp", "in_features": 30, "num_classes": 2, "activation": "tanh"},
        {"type": "tabular_mlp", "in_features": 0, "num_classes": 2},
        {"type": "brain_tumour_cnn", "channels": []},
        {"type": "brain_tumour_cnn", "dropout": 1.5},
    ],
)
def test_invalid_configs_are_rejected(config: dict[str, object]) -> None:
    with pytest.raises(Invalid) as info:
        M.build_model(config)
    assert info.value.code == "invalid_model_config"


def test_parameters_round_trip_through_safetensors() -> None:
    a, b = M.build_model(MLP, seed=1), M.build_model(MLP, seed=2)
    pa = M.get_parameters(a)
    assert all(v.dtype == np.float32 for v in pa.values())
    assert set(pa) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    M.set_parameters(b, decode(encode(pa)))
    x = torch.randn(4, 30)
    assert torch.equal(a(x), b(x))
    pa["net.0.bias"][:] = 99.0  # an owned copy: editing it does not touch the model
    assert not np.any(M.get_parameters(a)["net.0.bias"] == 99.0)


def test_seeded_build_is_reproducible() -> None:
    one, two = M.get_parameters(M.build_model(CNN, seed=5)), M.get_parameters(M.build_model(CNN, seed=5))
    assert all(np.array_equal(one[k], two[k]) for k in one)
    other = M.get_parameters(M.build_model(CNN, seed=6))
    assert not np.array_equal(one["head.1.weight"], other["head.1.weight"])


def test_set_parameters_checks_names_and_shapes() -> None:
    model = M.build_model(MLP)
    params = M.get_parameters(model)
    with pytest.raises(Invalid, match=r"net\.0\.bias"):
        M.set_parameters(model, {k: v for k, v in params.items() if k != "net.0.bias"})
    with pytest.raises(Invalid, match=r"'net\.2\.weight' has shape"):
        M.set_parameters(model, {**params, "net.2.weight": np.zeros((16, 2), np.float32)})


def test_fit_learns_and_evaluate_reports(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    model = M.build_model(MLP, seed=0)
    before = M.evaluate(model, X, y)
    out = M.fit(model, X[:400], y[:400], epochs=5, lr=0.05, batch_size=32, seed=0)
    after = M.evaluate(model, X[400:], y[400:])
    assert out["num_samples"] == 400.0 and out["loss"] > 0
    assert after["accuracy"] > 0.9 and after["loss"] < before["loss"]
    assert set(after) == {"loss", "accuracy", "num_samples"}


def test_fit_is_deterministic_with_a_seed(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    runs = []
    for _ in range(2):
        model = M.build_model({**MLP, "dropout": 0.2}, seed=0)
        M.fit(model, X, y, epochs=1, lr=0.05, batch_size=64, seed=3)
        runs.append(M.get_parameters(model))
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])


def _distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return float(sum(np.sum((a[k] - b[k]) ** 2) for k in a))


def test_proximal_term_keeps_the_model_near_the_global_one(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    start = M.get_parameters(M.build_model(MLP, seed=0))
    drift = {}
    for mu in (0.0, 1.0):
        model = M.build_model(MLP, seed=0)
        M.fit(model, X, y, epochs=3, lr=0.05, batch_size=32, prox_mu=mu, global_params=start, seed=1)
        drift[mu] = _distance(M.get_parameters(model), start)
    assert drift[1.0] < 0.7 * drift[0.0]


def test_fit_rejects_bad_arguments(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = cancer
    model = M.build_model(MLP)
    with pytest.raises(Invalid):
        M.fit(model, X, y, epochs=0)
    with pytest.raises(Invalid):
        M.fit(model, X, y[:-1])
    with pytest.raises(Invalid, match="global parameters lack"):
        M.fit(model, X, y, prox_mu=0.1, global_params={"net.0.weight": np.zeros((16, 30), np.float32)})


def test_cnn_fits_synthetic_mri_with_adam() -> None:
    """Overfitting a small batch is the cheap proof that gradients flow through every block."""
    X, y = synthetic_mri(2, size=32, seed=0)
    config = {"type": "brain_tumour_cnn", "image_size": 32, "channels": [8, 16], "hidden": 32, "dropout": 0.0}
    model = M.build_model(config, seed=0)
    before = M.evaluate(model, X, y)["loss"]
    M.fit(model, X, y, epochs=40, lr=0.01, batch_size=8, optimizer="adam", seed=0)
    after = M.evaluate(model, X, y)
    assert before > 1.2 and after["loss"] < 0.1 and after["accuracy"] == 1.0


def test_sites_and_jobs_train_the_same_network() -> None:
    """One MLP: a federation's tabular_mlp and a job's ReLU network of the same shape start identical."""
    from bastion.ml.model_types.mlp_net import Architecture, network

    config = {**MLP, "hidden": [16, 8], "dropout": 0.2}
    site = M.build_model(config, seed=7)
    torch.manual_seed(7)
    job = network(Architecture(n_inputs=30, hidden=[16, 8], n_outputs=2, activation="relu", dropout=0.2))
    assert type(site) is type(job)
    site_state, job_state = site.state_dict(), job.state_dict()
    assert list(site_state) == list(job_state)
    for name, tensor in site_state.items():
        assert torch.equal(tensor, job_state[name]), name
