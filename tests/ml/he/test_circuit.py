"""Models as CKKS circuits: folding preprocessing keeps the plaintext function; refusals say why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bastion.client.he import encode_rows
from bastion.errors import Invalid
from bastion.ml.he.circuit import compile_model
from bastion.ml.he.params import MAX_COEFF_BITS_128, max_depth, params_for_depth
from tests.ml.he.conftest import loaded


def _rows(dataset: Any) -> list[dict[str, float]]:
    return [dict(zip(dataset.feature_names, map(float, x), strict=True)) for x in dataset.X]


def test_logistic_circuit_is_the_decision_function(cancer: Any, logistic: Any) -> None:
    predictor = loaded(logistic)
    circuit = compile_model(predictor)
    assert (circuit.depth, circuit.link, circuit.n_outputs) == (1, "logistic", 1)
    assert not circuit.needs_relin_keys
    scores = circuit.plaintext(encode_rows(circuit.inputs, _rows(cancer)))[:, 0]
    expected = predictor.model.pipeline.decision_function(cancer.X)
    assert np.abs(scores - expected).max() < 1e-9


def test_poly_mlp_circuit_is_the_network(cancer: Any, poly_mlp: Any) -> None:
    import torch

    predictor = loaded(poly_mlp)
    circuit = compile_model(predictor)
    assert (circuit.depth, circuit.link, circuit.n_outputs) == (3, "softmax", 2)
    assert circuit.needs_relin_keys
    with torch.no_grad():
        logits = predictor.model._forward(cancer.X).double().numpy()
    folded = circuit.plaintext(encode_rows(circuit.inputs, _rows(cancer)))
    assert np.abs(folded - logits).max() < 1e-3  # the network itself runs in float32


def test_models_that_are_not_polynomials_are_refused_with_the_reason(cancer: Any) -> None:
    from bastion.ml.train import train

    forest = train("alzheimer_classifier", cancer, {"n_estimators": 3, "importance_repeats": 0})
    with pytest.raises(Invalid) as exc:
        compile_model(loaded(forest))
    assert exc.value.code == "he_unsupported_model" and "thresholds" in exc.value.message
    relu = train("adaptive_neural_net", cancer, {"hidden_layers": [4], "epochs": 2, "importance_repeats": 0})
    with pytest.raises(Invalid) as exc:
        compile_model(loaded(relu))
    assert exc.value.code == "he_unsupported_model" and "not a polynomial" in exc.value.message


def test_parameters_per_depth_stay_within_128_bit_bounds() -> None:
    for depth in range(1, max_depth() + 1):
        p = params_for_depth(depth)
        assert sum(p.coeff_mod_bit_sizes) <= MAX_COEFF_BITS_128[p.poly_modulus_degree]
        assert len(p.coeff_mod_bit_sizes) == depth + 2
    assert params_for_depth(1).poly_modulus_degree == 8192
    assert params_for_depth(3).poly_modulus_degree == 16384
    with pytest.raises(Invalid) as exc:
        params_for_depth(max_depth() + 1)
    assert exc.value.code == "he_model_too_deep"
