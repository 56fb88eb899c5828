import subprocess
import sys

import pytest

from bastion.errors import Invalid
from bastion.ml import model_types


def test_lists_the_model_types_with_schemas() -> None:
    described = {m["name"]: m for m in model_types.list_model_types()}
    assert set(described) == {
        "alzheimer_classifier",
        "adaptive_neural_net",
        "tabular_regressor",
        "he_mlp",
        "dqn",
    }
    assert described["dqn"]["tasks"] == ["reinforcement"]
    assert described["he_mlp"]["params"]["properties"]["activation"]["enum"] == ["square", "poly"]
    assert described["alzheimer_classifier"]["tasks"] == ["classification"]
    assert described["tabular_regressor"]["tasks"] == ["regression"]
    assert described["adaptive_neural_net"]["tasks"] == ["classification", "regression"]
    props = described["alzheimer_classifier"]["params"]["properties"]
    assert props["estimator"]["enum"] == [
        "logistic_regression",
        "random_forest",
        "gradient_boosting",
        "voting",
        "stacking",
    ]
    assert props["n_estimators"]["maximum"] == 2000


def test_registry_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, bastion.ml.model_types as r\n"
        "r.validate_params('adaptive_neural_net', {'epochs': 3})\n"
        "r.estimate_seconds('alzheimer_classifier', 100, 5, {})\n"
        "r.list_model_types()\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'pandas', 'skops', 'tenseal', 'gymnasium', 'stable_baselines3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_defaults_validate() -> None:
    params = model_types.validate_params("alzheimer_classifier", {})
    assert params.estimator == "random_forest"  # type: ignore[attr-defined]
    assert params.test_size == 0.2  # type: ignore[attr-defined]
    assert model_types.validate_params("adaptive_neural_net", None).hidden_layers == [64, 32]  # type: ignore[attr-defined]


def test_unknown_model_type_lists_the_choices() -> None:
    with pytest.raises(Invalid) as err:
        model_types.validate_params("gpt_classifier", {})
    assert "alzheimer_classifier" in err.value.message and "tabular_regressor" in err.value.message
    assert err.value.details["choices"] == model_types.model_type_names()


def test_unknown_param_lists_the_valid_fields() -> None:
    with pytest.raises(Invalid) as err:
        model_types.validate_params("alzheimer_classifier", {"n_trees": 10})
    msg = err.value.message
    assert "'n_trees'" in msg and "n_estimators" in msg and "estimator" in msg
    assert "n_estimators" in err.value.details["valid_params"]


@pytest.mark.parametrize(
    ("model_type", "params", "fragment"),
    [
        ("alzheimer_classifier", {"estimator": "svm"}, "'logistic_regression', 'random_forest',"),
        ("alzheimer_classifier", {"n_estimators": 0}, "n_estimators"),
        ("tabular_regressor", {"estimator": "logistic_regression"}, "'ridge'"),
        ("adaptive_neural_net", {"hidden_layers": [64, 5000]}, "hidden_layers"),
        ("adaptive_neural_net", {"learning_rate": -1}, "learning_rate"),
        ("adaptive_neural_net", {"test_size": 0.9}, "test_size"),
    ],
)
def test_out_of_bounds_params_are_refused(model_type: str, params: dict, fragment: str) -> None:
    with pytest.raises(Invalid, match=fragment):
        model_types.validate_params(model_type, params)


def test_params_must_be_an_object() -> None:
    with pytest.raises(Invalid, match="object"):
        model_types.validate_params("tabular_regressor", [1, 2])  # type: ignore[arg-type]


def test_task_mismatch_is_explained() -> None:
    model_types.check_task("alzheimer_classifier", "classification")
    with pytest.raises(
        Invalid, match="supports classification datasets, but dataset 'diabetes' is a regression"
    ):
        model_types.check_task("alzheimer_classifier", "regression", "diabetes")
    with pytest.raises(Invalid, match="regression"):
        model_types.check_task("tabular_regressor", "classification")


def test_estimates_grow_with_the_work() -> None:
    for name in model_types.model_type_names():
        small = model_types.estimate_seconds(name, 100, 5, {})
        big = model_types.estimate_seconds(name, 100_000, 50, {})
        assert 0 < small < big
    few = model_types.estimate_seconds("alzheimer_classifier", 10_000, 10, {"n_estimators": 10})
    many = model_types.estimate_seconds("alzheimer_classifier", 10_000, 10, {"n_estimators": 1000})
    assert many > few
    with pytest.raises(Invalid):
        model_types.estimate_seconds("adaptive_neural_net", 0, 5, {})
