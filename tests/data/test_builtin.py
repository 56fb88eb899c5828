from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bastion.data.builtin import DATASET_SOURCES, load_dataset
from bastion.data.synthetic import oasis_like_frame
from bastion.errors import Invalid

ALZHEIMER_FEATURES = ["M/F", "Age", "EDUC", "SES", "MMSE", "CDR", "eTIV", "nWBV", "ASF"]


def test_synthetic_is_deterministic_and_oasis_shaped() -> None:
    a = load_dataset("synthetic_test_data", seed=5)
    b = load_dataset("synthetic_test_data", seed=5)
    np.testing.assert_array_equal(a.X, b.X)  # NaNs compare equal here
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.y, load_dataset("synthetic_test_data", seed=6).y)
    assert a.feature_names == ALZHEIMER_FEATURES
    assert a.target_names == ["Converted", "Demented", "Nondemented"]
    assert a.task == "classification"
    assert a.categories == {"M/F": ["F", "M"]}
    assert set(np.unique(a.X[:, 0])) == {0.0, 1.0}
    assert a.meta["synthetic"] is True and a.meta["synthetic_fallback"] is False


def test_unknown_source_lists_the_choices() -> None:
    with pytest.raises(Invalid) as err:
        load_dataset("mnist_from_the_internet")
    for name in DATASET_SOURCES:
        assert name in err.value.message


def test_kaggle_falls_back_to_synthetic_and_says_so(tmp_path: Path) -> None:
    for path in (None, tmp_path / "absent.csv"):
        ds = load_dataset("kaggle_alzheimer", kaggle_path=path)
        assert ds.meta["source"] == "kaggle_alzheimer"
        assert ds.meta["synthetic_fallback"] is True
        assert "synthetic" in ds.meta["fallback_reason"]
        assert str(tmp_path) not in ds.meta["fallback_reason"]
        assert ds.feature_names == ALZHEIMER_FEATURES


def _kaggle_csv(path: Path) -> pd.DataFrame:
    """A Kaggle-format file with two visits per subject, as in the real OASIS longitudinal data."""
    first = oasis_like_frame(60, seed=11)
    second = first.copy()
    second["Visit"] = 2
    second["MR Delay"] = 700
    second["MRI ID"] = second["Subject ID"] + "_MR2"
    second["Age"] = second["Age"] + 2
    frame = pd.concat([first, second], ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


def test_kaggle_reads_the_real_file_with_subject_groups(tmp_path: Path) -> None:
    path = tmp_path / "oasis_longitudinal.csv"
    frame = _kaggle_csv(path)
    ds = load_dataset("kaggle_alzheimer", kaggle_path=path)
    assert ds.meta["synthetic"] is False and ds.meta["synthetic_fallback"] is False
    assert ds.n_samples == len(frame)
    assert ds.feature_names == ALZHEIMER_FEATURES
    assert ds.groups is not None and len(set(ds.groups)) == 60
    np.testing.assert_array_equal(ds.X[:, 1], frame["Age"].to_numpy(dtype=float))


def test_kaggle_file_missing_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "oasis.csv"
    oasis_like_frame(20, seed=0).drop(columns=["MMSE", "eTIV"]).to_csv(path, index=False)
    with pytest.raises(Invalid, match="MMSE, eTIV"):
        load_dataset("kaggle_alzheimer", kaggle_path=path)


@pytest.mark.parametrize(
    ("name", "shape", "task", "n_classes"),
    [
        ("breast_cancer", (569, 30), "classification", 2),
        ("diabetes", (442, 10), "regression", 0),
        ("digits", (1797, 64), "classification", 10),
        ("wine", (178, 13), "classification", 3),
    ],
)
def test_sklearn_bundled_datasets(name: str, shape: tuple[int, int], task: str, n_classes: int) -> None:
    ds = load_dataset(name)
    assert ds.X.shape == shape and ds.task == task and ds.n_classes == n_classes
    assert len(set(ds.feature_names)) == shape[1]
    assert not np.isnan(ds.X).any()


def test_builtin_sources_refuse_a_frame_or_another_target() -> None:
    with pytest.raises(Invalid):
        load_dataset("wine", frame=pd.DataFrame({"a": [1]}))
    with pytest.raises(Invalid, match="Group"):
        load_dataset("synthetic_test_data", target="MMSE")


def _upload() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 120
    smoker = rng.choice(np.array(["yes", "no", None], dtype=object), size=n, p=[0.3, 0.6, 0.1])
    age = rng.integers(20, 90, size=n).astype(float)
    age[:5] = np.nan
    outcome = np.where(age > 55, "sick", "well").astype(object)
    outcome[7] = None
    return pd.DataFrame(
        {
            "patient_ref": [f"P{i:05d}" for i in range(n)],  # identifier: too many levels to be a feature
            "age": age,
            "smoker": smoker,
            "empty": [None] * n,
            "outcome": outcome,
        }
    )


def test_user_provided_encodes_categories_and_drops_identifiers() -> None:
    ds = load_dataset("user_provided", frame=_upload(), target="outcome")
    assert ds.task == "classification"
    assert ds.target_names == ["sick", "well"]
    assert ds.feature_names == ["age", "smoker"]
    assert ds.categories == {"smoker": ["no", "yes"]}
    assert ds.n_samples == 119  # one row had no target
    assert ds.meta["dropped_rows_missing_target"] == 1
    assert set(ds.meta["dropped_columns"]) == {"patient_ref", "empty"}
    assert np.isnan(ds.X[:, 0]).sum() == 5  # missing ages stay missing, for the imputer
    assert np.isnan(ds.X[:, 1]).any()


def test_user_provided_infers_regression_and_accepts_an_explicit_task() -> None:
    frame = pd.DataFrame({"x": np.arange(40.0), "y": np.linspace(0.5, 20.3, 40)})
    assert load_dataset("user_provided", frame=frame, target="y").task == "regression"
    frame["label"] = np.arange(40) % 3
    assert load_dataset("user_provided", frame=frame, target="label").task == "classification"
    as_reg = load_dataset("user_provided", frame=frame, target="label", task="regression")
    assert as_reg.task == "regression" and as_reg.target_names is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "outcome"}, "uploaded dataset"),
        ({"frame": "not a frame", "target": "outcome"}, "DataFrame"),
        ({"frame": _upload()}, "target column"),
        ({"frame": _upload(), "target": "nope"}, "'nope' not found"),
        ({"frame": _upload().assign(outcome="same"), "target": "outcome"}, "single class"),
        ({"frame": _upload()[["outcome"]], "target": "outcome"}, "no usable feature"),
        ({"frame": _upload(), "target": "outcome", "task": "ranking"}, "unknown task"),
    ],
)
def test_user_provided_refusals(kwargs: dict, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        load_dataset("user_provided", **kwargs)
