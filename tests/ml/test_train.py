import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.data.builtin import load_dataset
from bastion.data.dataset import Dataset
from bastion.errors import Invalid
from bastion.ml.train import TrainResult, train

FAST_FOREST = {"estimator": "random_forest", "n_estimators": 40, "importance_repeats": 2}


@pytest.fixture(scope="module")
def alzheimer() -> Dataset:
    return load_dataset("synthetic_test_data", seed=0)


@pytest.fixture(scope="module")
def forest(alzheimer: Dataset) -> tuple[TrainResult, list[tuple[float, dict[str, Any]]]]:
    calls: list[tuple[float, dict[str, Any]]] = []
    result = train("alzheimer_classifier", alzheimer, FAST_FOREST, progress=lambda f, e: calls.append((f, e)))
    return result, calls


def _check_progress(calls: list[tuple[float, dict[str, Any]]]) -> None:
    fractions = [f for f, _ in calls]
    assert len(fractions) >= 3
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and fractions[-2] < 1.0
    assert calls[-1][1]["stage"] == "done"


def test_classifier_learns_the_synthetic_alzheimer_data(
    alzheimer: Dataset, forest: tuple[TrainResult, list]
) -> None:
    result, _ = forest
    m = result.metrics
    assert m["accuracy"] > 0.6  # three classes: chance is about 1/3, the majority class about 0.46
    assert m["f1"] > 0.45 and m["roc_auc"] > 0.7
    assert m["training_accuracy"] >= m["accuracy"]
    assert m["training_samples"] + m["test_samples"] == alzheimer.n_samples
    assert m["test_samples"] == 80 and m["feature_count"] == 9
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == m["test_samples"]
    assert np.trace(cm) / cm.sum() == pytest.approx(m["accuracy"], abs=1e-6)
    assert m["classes"] == ["Converted", "Demented", "Nondemented"]
    assert m["model_type"] == "alzheimer_classifier"
    assert m["dataset"]["source"] == "synthetic_test_data"
    assert m["training_duration_seconds"] >= m["fit_seconds"] > 0


def test_permutation_importance_ranks_the_informative_features(forest: tuple[TrainResult, list]) -> None:
    importance = forest[0].metrics["feature_importance"]
    names = [f["feature"] for f in importance]
    assert set(names) <= {"M/F", "Age", "EDUC", "SES", "MMSE", "CDR", "eTIV", "nWBV", "ASF"}
    # Cognition scores drive the synthetic diagnosis; head size does not.
    assert names.index("MMSE") < names.index("eTIV")
    assert importance[0]["importance"] > 0


def test_progress_is_monotonic_and_ends_at_one(forest: tuple[TrainResult, list]) -> None:
    calls = forest[1]
    _check_progress(calls)
    stages = [e.get("estimators") for _, e in calls if e.get("stage") == "fit" and "estimators" in e]
    assert stages == sorted(stages) and stages[-1] == 40  # the forest grows in stages


def test_model_config_describes_the_model(forest: tuple[TrainResult, list]) -> None:
    result = forest[0]
    assert result.model_format == "skops" and result.model_bytes[:4] == b"PK\x03\x04"
    cfg = result.model_config
    assert cfg["feature_names"][4] == "MMSE" and cfg["categories"] == {"M/F": ["F", "M"]}
    assert cfg["classes"] == ["Converted", "Demented", "Nondemented"]
    assert cfg["estimator"] == "random_forest" and cfg["params"]["n_estimators"] == 40
    assert cfg["task"] == "classification" and cfg["target"] == "Group"
    # Results and config go to the store as JSON: they must survive the trip unchanged.
    assert json.loads(json.dumps(result.metrics)) == result.metrics
    assert json.loads(json.dumps(cfg)) == cfg


@pytest.mark.parametrize("estimator", ["logistic_regression", "gradient_boosting"])
def test_other_classifiers_learn_too(alzheimer: Dataset, estimator: str) -> None:
    calls: list[float] = []
    params = {"estimator": estimator, "n_estimators": 30, "importance_repeats": 0}
    result = train("alzheimer_classifier", alzheimer, params, progress=lambda f, e: calls.append(f))
    assert result.metrics["accuracy"] > 0.6
    assert result.metrics["feature_importance"] == []
    assert calls == sorted(calls) and calls[-1] == 1.0


def test_same_seed_same_model_other_seed_other_split(alzheimer: Dataset) -> None:
    params = {"n_estimators": 10, "importance_repeats": 0}
    a = train("alzheimer_classifier", alzheimer, params, seed=1).metrics
    b = train("alzheimer_classifier", alzheimer, params, seed=1).metrics
    c = train("alzheimer_classifier", alzheimer, params, seed=2).metrics
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["accuracy"] == b["accuracy"]
    assert a["confusion_matrix"] != c["confusion_matrix"]


@pytest.mark.parametrize("estimator", ["ridge", "random_forest", "gradient_boosting"])
def test_regressor_on_diabetes(estimator: str) -> None:
    ds = load_dataset("diabetes")
    calls: list[float] = []
    params = {"estimator": estimator, "n_estimators": 30, "max_depth": 4, "importance_repeats": 1}
    result = train("tabular_regressor", ds, params, progress=lambda f, e: calls.append(f))
    m = result.metrics
    assert m["r2"] > 0.2  # the mean predictor scores 0
    assert m["rmse"] >= m["mae"] > 0
    assert "accuracy" not in m and "training_accuracy" not in m
    assert result.model_config["classes"] is None
    assert {f["feature"] for f in m["feature_importance"]} <= set(ds.feature_names)
    assert calls[-1] == 1.0


def test_binary_classification_reports_roc_auc() -> None:
    result = train(
        "alzheimer_classifier", load_dataset("breast_cancer"), {"estimator": "logistic_regression"}
    )
    assert result.metrics["roc_auc"] > 0.95
    assert np.array(result.metrics["confusion_matrix"]).shape == (2, 2)


def test_classifier_on_a_regression_dataset_is_refused() -> None:
    with pytest.raises(Invalid, match="'diabetes' is a regression task"):
        train("alzheimer_classifier", load_dataset("diabetes"), {})


def test_bad_params_and_model_types_are_refused(alzheimer: Dataset) -> None:
    with pytest.raises(Invalid, match="valid parameters"):
        train("alzheimer_classifier", alzheimer, {"trees": 3})
    with pytest.raises(Invalid, match="valid choices"):
        train("svm", alzheimer, {})


def test_too_little_data_is_refused() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y": ["a", "b", "a", "b", "a", "b"]})
    with pytest.raises(Invalid, match="at least 10"):
        train("alzheimer_classifier", load_dataset("user_provided", frame=frame, target="y"), {})
    frame = pd.DataFrame({"x": np.arange(20.0), "y": ["a"] * 19 + ["b"]})
    with pytest.raises(Invalid, match="fewer than 2 rows"):
        train("alzheimer_classifier", load_dataset("user_provided", frame=frame, target="y"), {})


def test_kaggle_fallback_flag_reaches_the_results() -> None:
    ds = load_dataset("kaggle_alzheimer", kaggle_path=None)
    result = train("alzheimer_classifier", ds, {"estimator": "logistic_regression", "importance_repeats": 0})
    assert result.metrics["dataset"]["synthetic_fallback"] is True
    assert "synthetic" in result.metrics["dataset"]["fallback_reason"]


def test_grouped_data_never_splits_a_subject(alzheimer: Dataset) -> None:
    from bastion.ml.split import held_out_split

    groups = np.repeat(np.arange(alzheimer.n_samples // 2), 2).astype(str)
    grouped = Dataset(
        alzheimer.X, alzheimer.y, alzheimer.feature_names, alzheimer.target_names, "classification",
        groups=groups,
    )  # fmt: skip
    split = held_out_split(grouped, 0.2, seed=0)
    assert split.grouped
    assert not set(groups[split.train_idx]) & set(groups[split.test_idx])


def test_a_raising_progress_callback_stops_training(alzheimer: Dataset) -> None:
    class Cancelled(Exception):
        pass

    def cancel(fraction: float, event: dict[str, Any]) -> None:
        if event.get("stage") == "fit" and "estimators" in event:
            raise Cancelled

    with pytest.raises(Cancelled):
        train("alzheimer_classifier", alzheimer, {"n_estimators": 50}, progress=cancel)
