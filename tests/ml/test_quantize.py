import json
import struct

import numpy as np
import pytest
import torch

from bastion.data.builtin import load_dataset
from bastion.data.dataset import Dataset
from bastion.errors import Invalid
from bastion.ml.quantize import SCHEME, QuantizeResult, quantize_for_dataset, quantize_model
from bastion.ml.serialize import load_model
from bastion.ml.split import held_out_split
from bastion.ml.train import TrainResult, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits: Dataset) -> TrainResult:
    params = {"hidden_layers": [128, 64], "epochs": 12, "importance_repeats": 0}
    return train("adaptive_neural_net", digits, params, seed=0)


@pytest.fixture(scope="module")
def quantized(trained: TrainResult, digits: Dataset) -> QuantizeResult:
    return quantize_for_dataset(trained.model_bytes, trained.model_config, digits, seed=0)


def _header(data: bytes) -> dict:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size])


def test_report_measures_size_and_accuracy(trained: TrainResult, quantized: QuantizeResult) -> None:
    report = quantized.report
    assert report["size_before"] == len(trained.model_bytes)
    assert report["size_after"] == len(quantized.model_bytes)
    assert report["size_after"] < 0.4 * report["size_before"]  # int8 weights: about a quarter
    assert report["accuracy_before"] == pytest.approx(trained.metrics["accuracy"], abs=1e-6)
    assert report["accuracy_after"] >= report["accuracy_before"] - 0.03
    assert report["prediction_agreement"] > 0.95
    assert report["evaluated_rows"] == trained.metrics["test_samples"]
    assert 0 < report["max_abs_weight_error"] < 0.05


def test_quantized_file_is_int8_safetensors_and_loads_without_pickle(
    quantized: QuantizeResult, trained: TrainResult, digits: Dataset
) -> None:
    header = _header(quantized.model_bytes)
    assert header["net.0.weight"]["dtype"] == "I8"
    assert header["net.0.weight.scale"]["dtype"] == "F32"
    assert header["net.0.bias"]["dtype"] == "F32"
    config = json.loads(json.dumps(quantized.model_config))
    assert config["quantization"]["scheme"] == SCHEME
    predictor = load_model(quantized.model_bytes, "safetensors", config)
    original = load_model(trained.model_bytes, "safetensors", trained.model_config)
    X_test, _ = held_out_split(digits, 0.2, seed=0).test(digits)
    agree = np.mean(predictor.predict(X_test) == original.predict(X_test))
    assert agree == pytest.approx(quantized.report["prediction_agreement"], abs=1e-6)


def test_quantized_bytes_need_their_config(quantized: QuantizeResult, trained: TrainResult) -> None:
    with pytest.raises(Invalid, match="no quantization"):
        load_model(quantized.model_bytes, "safetensors", trained.model_config)
    with pytest.raises(Invalid, match="unknown quantization scheme"):
        load_model(
            quantized.model_bytes, "safetensors", {**quantized.model_config, "quantization": {"scheme": "x"}}
        )


def test_quantizing_twice_or_a_skops_model_is_refused(quantized: QuantizeResult, digits: Dataset) -> None:
    X, y = digits.X[:20], digits.y[:20]
    with pytest.raises(Invalid, match="already quantized"):
        quantize_model(quantized.model_bytes, quantized.model_config, X, y)
    with pytest.raises(Invalid, match="neural-network"):
        quantize_model(b"PK\x03\x04", {**quantized.model_config, "format": "skops"}, X, y)


def test_regression_report_uses_r2() -> None:
    ds = load_dataset("diabetes")
    result = train("adaptive_neural_net", ds, {"epochs": 20, "importance_repeats": 0})
    report = quantize_for_dataset(result.model_bytes, result.model_config, ds).report
    assert report["metric"] == "r2"
    assert report["r2_before"] == pytest.approx(result.metrics["r2"], abs=1e-6)
    assert abs(report["r2_after"] - report["r2_before"]) < 0.05
