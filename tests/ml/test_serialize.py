import io
import json
import os
import pickle
import zipfile
from typing import Any

import numpy as np
import pytest
import skops.io as sio
import torch
from safetensors.torch import save as save_safetensors

from bastion.data.builtin import load_dataset
from bastion.data.dataset import Dataset
from bastion.errors import Invalid
from bastion.ml.serialize import REFUSED, load_model, skops_allowed_types
from bastion.ml.train import TrainResult, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def alzheimer() -> Dataset:
    return load_dataset("synthetic_test_data", seed=4)


@pytest.fixture(scope="module")
def forest(alzheimer: Dataset) -> TrainResult:
    return train("alzheimer_classifier", alzheimer, {"n_estimators": 15, "importance_repeats": 0})


@pytest.fixture(scope="module")
def mlp(alzheimer: Dataset) -> TrainResult:
    return train("adaptive_neural_net", alzheimer, {"epochs": 8, "importance_repeats": 0})


def _rows(ds: Dataset, n: int) -> list[dict[str, Any]]:
    """Rows as a client sends them: keyed by feature name, categories as text, gaps as None."""
    rows = []
    for values in ds.X[:n]:
        row: dict[str, Any] = {}
        for name, v in zip(ds.feature_names, values, strict=True):
            if np.isnan(v):
                row[name] = None
            elif name in ds.categories:
                row[name] = ds.categories[name][int(v)]
            else:
                row[name] = float(v)
        rows.append(row)
    return rows


def _json(config: dict[str, Any]) -> dict[str, Any]:
    """What the store hands back: the config after a trip through JSON."""
    return json.loads(json.dumps(config))


@pytest.mark.parametrize("which", ["forest", "mlp"])
def test_round_trip_gives_the_same_predictions(which: str, alzheimer: Dataset, request: Any) -> None:
    result: TrainResult = request.getfixturevalue(which)
    predictor = load_model(result.model_bytes, result.model_format, _json(result.model_config))
    again = load_model(result.model_bytes, result.model_format, _json(result.model_config))
    rows = _rows(alzheimer, 60)
    assert any(r["SES"] is None for r in rows) or any(r["MMSE"] is None for r in rows)
    labels = predictor.predict(rows)
    assert set(labels) <= {"Converted", "Demented", "Nondemented"}
    np.testing.assert_array_equal(labels, again.predict(rows))
    np.testing.assert_array_equal(labels, predictor.predict(alzheimer.X[:60]))
    proba = predictor.predict_proba(rows)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.array(predictor.classes, dtype=object)[proba.argmax(axis=1)], labels)
    np.testing.assert_allclose(proba, again.predict_proba(alzheimer.X[:60]), atol=1e-12)


def test_loaded_model_scores_like_the_trained_one(forest: TrainResult) -> None:
    ds = load_dataset("synthetic_test_data", seed=4)
    predictor = load_model(forest.model_bytes, "skops", forest.model_config)
    from bastion.ml.split import held_out_split

    X_test, y_test = held_out_split(ds, 0.2, seed=0).test(ds)
    accuracy = float(np.mean(predictor.predict(X_test) == np.array(ds.target_names)[y_test]))
    assert accuracy == pytest.approx(forest.metrics["accuracy"], abs=1e-6)


def test_regressor_round_trip() -> None:
    ds = load_dataset("diabetes")
    result = train("tabular_regressor", ds, {"estimator": "ridge", "importance_repeats": 0})
    predictor = load_model(result.model_bytes, "skops", _json(result.model_config))
    values = predictor.predict([dict(zip(ds.feature_names, row, strict=True)) for row in ds.X[:5].tolist()])
    assert values.dtype == np.float64 and values.shape == (5,)
    with pytest.raises(Invalid, match="regressor"):
        predictor.predict_proba(ds.X[:5])


def test_rows_with_missing_or_extra_columns_are_refused(forest: TrainResult, alzheimer: Dataset) -> None:
    predictor = load_model(forest.model_bytes, "skops", forest.model_config)
    row = _rows(alzheimer, 1)[0]
    missing = {k: v for k, v in row.items() if k != "MMSE"}
    with pytest.raises(Invalid, match="missing columns: 'MMSE'") as err:
        predictor.predict([missing])
    assert err.value.details["missing"] == ["MMSE"]
    with pytest.raises(Invalid, match="unexpected columns: 'shoe_size'"):
        predictor.predict([{**row, "shoe_size": 44}])
    with pytest.raises(Invalid, match="'M/F' has unknown value 'X'"):
        predictor.predict([{**row, "M/F": "X"}])
    with pytest.raises(Invalid, match="'Age' must be a number"):
        predictor.predict([{**row, "Age": "old"}])
    with pytest.raises(Invalid, match="9 columns"):
        predictor.predict(np.zeros((2, 4)))
    with pytest.raises(Invalid, match="codes outside"):
        predictor.predict(np.full((1, 9), 5.0))


class Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("fmt", ["skops", "safetensors"])
def test_a_pickle_is_refused(fmt: str, forest: TrainResult) -> None:
    payload = pickle.dumps(Evil())
    assert payload[:1] == b"\x80"
    with pytest.raises(Invalid, match=REFUSED):
        load_model(payload, fmt, forest.model_config)


def test_a_torch_save_file_is_refused(mlp: TrainResult) -> None:
    buffer = io.BytesIO()
    torch.save({"net.0.weight": torch.zeros(2, 2)}, buffer)  # a zip holding data.pkl
    for fmt in ("skops", "safetensors"):
        with pytest.raises(Invalid, match=REFUSED):
            load_model(buffer.getvalue(), fmt, mlp.model_config)


@pytest.mark.parametrize("payload", [b"", b"hello world, not a model", b"\x00" * 64, b"PK\x03\x04garbage"])
def test_garbage_is_refused(payload: bytes, forest: TrainResult) -> None:
    with pytest.raises(Invalid, match="refused"):
        load_model(payload, "skops", forest.model_config)


def test_format_must_match_the_bytes(forest: TrainResult, mlp: TrainResult) -> None:
    with pytest.raises(Invalid, match=REFUSED):
        load_model(forest.model_bytes, "safetensors", mlp.model_config)
    with pytest.raises(Invalid, match=REFUSED):
        load_model(mlp.model_bytes, "skops", forest.model_config)
    with pytest.raises(Invalid, match="unknown model format"):
        load_model(forest.model_bytes, "pickle", forest.model_config)


def test_skops_file_with_a_function_is_refused(forest: TrainResult) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    payload = sio.dumps(Pipeline([("f", FunctionTransformer(func=os.system))]))
    with pytest.raises(Invalid, match="untrusted type"):
        load_model(payload, "skops", forest.model_config)


def test_skops_file_with_a_type_outside_the_allow_list_is_refused(
    forest: TrainResult, alzheimer: Dataset
) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    # skops itself trusts every scikit-learn estimator by default; Bastion trusts only its own.
    model = KNeighborsClassifier(n_neighbors=3).fit(np.nan_to_num(alzheimer.X), alzheimer.y)
    payload = sio.dumps(model)
    assert "sklearn.neighbors._classification.KNeighborsClassifier" not in sio.get_untrusted_types(
        data=payload
    )
    with pytest.raises(Invalid, match=r"untrusted type.*KNeighborsClassifier"):
        load_model(payload, "skops", forest.model_config)


def test_tampered_skops_schema_naming_a_dangerous_type_is_refused(forest: TrainResult) -> None:
    source = zipfile.ZipFile(io.BytesIO(forest.model_bytes))
    schema = json.loads(source.read("schema.json"))
    stack: list[Any] = [schema]
    while stack:  # rename the StandardScaler node to os.system
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("__class__") == "StandardScaler":
                node["__module__"], node["__class__"] = "os", "system"
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert '"__module__": "os"' in json.dumps(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = json.dumps(schema).encode() if item.filename == "schema.json" else source.read(item)
            target.writestr(item, data)
    with pytest.raises(Invalid, match=r"untrusted type.*os\.system"):
        load_model(out.getvalue(), "skops", forest.model_config)


def test_allow_list_is_explicit() -> None:
    allowed = skops_allowed_types()
    assert "sklearn.pipeline.Pipeline" in allowed and "numpy.ndarray" in allowed
    assert not any(
        name.startswith(("os.", "subprocess.", "builtins.eval", "builtins.exec")) for name in allowed
    )
    assert "sklearn.preprocessing._function_transformer.FunctionTransformer" not in allowed


def test_safetensors_that_do_not_fit_the_config_are_refused(mlp: TrainResult) -> None:
    other = save_safetensors({"net.0.weight": torch.zeros(3, 3)})
    with pytest.raises(Invalid, match="do not match"):
        load_model(other, "safetensors", mlp.model_config)
    config = _json(mlp.model_config)
    config["architecture"]["hidden"] = [64, 33]
    with pytest.raises(Invalid):
        load_model(mlp.model_bytes, "safetensors", config)
    config = _json(mlp.model_config)
    config["architecture"]["hidden"] = [10**6]
    with pytest.raises(Invalid, match="malformed network config"):
        load_model(mlp.model_bytes, "safetensors", config)


def test_integer_weights_without_a_quantization_config_are_refused(mlp: TrainResult) -> None:
    from safetensors.torch import load

    state = load(mlp.model_bytes)
    state["net.0.weight"] = state["net.0.weight"].to(torch.int8)
    with pytest.raises(Invalid, match="no quantization"):
        load_model(save_safetensors(state), "safetensors", mlp.model_config)


def test_config_must_name_features_and_classes(forest: TrainResult) -> None:
    broken: dict[str, Any]
    for broken in ({"feature_names": []}, {"classes": None}, {"task": "clustering"}):
        with pytest.raises(Invalid):
            load_model(forest.model_bytes, "skops", {**forest.model_config, **broken})
