import numpy as np
import pytest

from bastion.data.synthetic import GROUPS, KAGGLE_COLUMNS, oasis_like_columns, oasis_like_frame


def test_same_seed_same_data_and_other_seed_other_data() -> None:
    a = oasis_like_frame(200, seed=7)
    b = oasis_like_frame(200, seed=7)
    c = oasis_like_frame(200, seed=8)
    assert a.equals(b)
    assert not a.equals(c)


def test_columns_are_the_kaggle_oasis_layout() -> None:
    frame = oasis_like_frame(50, seed=0)
    assert tuple(frame.columns) == KAGGLE_COLUMNS


def test_marginals_are_plausible() -> None:
    cols = oasis_like_columns(1000, seed=1)
    assert set(cols["Group"]) == set(GROUPS)
    assert set(cols["M/F"]) == {"M", "F"}
    assert cols["Age"].min() >= 60 and cols["Age"].max() <= 98
    assert 70 <= cols["Age"].mean() <= 82
    mmse = cols["MMSE"][~np.isnan(cols["MMSE"])]
    assert mmse.min() >= 4 and mmse.max() <= 30
    assert set(np.unique(cols["CDR"])) <= {0.0, 0.5, 1.0, 2.0}
    assert cols["eTIV"].min() >= 1100 and cols["eTIV"].max() <= 2010
    assert cols["nWBV"].min() >= 0.64 and cols["nWBV"].max() <= 0.84
    # ASF is the atlas scaling factor, inversely proportional to eTIV.
    np.testing.assert_allclose(cols["ASF"] * cols["eTIV"], 1755.0, rtol=0.03)
    ses = cols["SES"]
    assert 0 < np.isnan(ses).sum() < 0.15 * len(ses)
    assert set(np.unique(ses[~np.isnan(ses)])) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_target_follows_the_features() -> None:
    frame = oasis_like_frame(1000, seed=2)
    means = frame.groupby("Group")[["MMSE", "CDR", "nWBV"]].mean()
    assert means.loc["Demented", "MMSE"] < means.loc["Converted", "MMSE"] < means.loc["Nondemented", "MMSE"]
    assert means.loc["Demented", "CDR"] > means.loc["Nondemented", "CDR"]
    assert means.loc["Demented", "nWBV"] < means.loc["Nondemented", "nWBV"]


def test_learnable_but_not_trivially_separable() -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bastion.data.builtin import synthetic_alzheimer

    ds = synthetic_alzheimer(seed=3, n_samples=600)
    majority = np.bincount(ds.y).max() / len(ds.y)
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=500))
    accuracy = cross_val_score(model, ds.X, ds.y, cv=4).mean()
    assert accuracy > majority + 0.15
    assert accuracy < 0.97


def test_rejects_empty_request() -> None:
    with pytest.raises(ValueError):
        oasis_like_columns(0)
