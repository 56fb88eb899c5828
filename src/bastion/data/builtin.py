"""The built-in datasets, described once in :data:`BUILTINS`, and the one function that loads them.

``synthetic_test_data`` and ``kaggle_alzheimer`` are the seeds' sources (OASIS Alzheimer features,
target ``Group``); ``breast_cancer``, ``diabetes``, ``digits`` and ``wine`` are scikit-learn's bundled
real datasets (no download); ``mri`` is synthetic brain-MRI slices for federated sites only;
``user_provided`` takes a DataFrame the vault has already decrypted. Job submission
(``bastion.jobs.datasets``), federated sites (``bastion.federation.sitedata``) and the views that list
sources all read the table; nothing else repeats a name, shape or task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.data.dataset import Dataset, Task
from bastion.data.frames import frame_to_dataset
from bastion.data.synthetic import KAGGLE_COLUMNS, oasis_like_frame
from bastion.errors import Invalid

if TYPE_CHECKING:
    import pandas as pd

ALZHEIMER_TARGET = "Group"
# Bookkeeping columns of the OASIS file: identifiers and visit timing, not patient features.
ALZHEIMER_NON_FEATURES = ("Subject ID", "MRI ID", "Visit", "MR Delay", "Hand")
SYNTHETIC_SAMPLES = 400
MRI_PER_CLASS = 60  # synthetic slices per class of the ``mri`` built-in
USER_PROVIDED = "user_provided"


@dataclass(frozen=True)
class Builtin:
    """One built-in dataset: enough to check a request and estimate its cost without loading it.

    ``loader`` is ``alzheimer`` (synthetic or Kaggle OASIS), ``sklearn:<function>`` (a dataset bundled
    with scikit-learn) or ``mri`` (synthetic images); ``jobs``/``federated`` say who may name it
    (a job's ``dataset_source``, a site's ``builtin:<name>``). ``n_features`` is None for images and
    ``n_classes`` None for regression. tests/jobs/test_datasets.py loads each and checks the figures.
    """

    name: str
    loader: str
    task: Task
    n_samples: int
    n_features: int | None
    n_classes: int | None
    target: str
    description: str
    jobs: bool = True
    federated: bool = False

    @property
    def tabular(self) -> bool:
        return self.n_features is not None


_ALZ, _SK, _N = "alzheimer", "sklearn:load_", SYNTHETIC_SAMPLES
# fmt: off
BUILTINS: dict[str, Builtin] = {b.name: b for b in (
    #       name                   loader                 task         rows  features classes  target
    Builtin("synthetic_test_data", _ALZ,                  "classification", _N,   9,  3,    ALZHEIMER_TARGET,
            "Seeded OASIS-like Alzheimer features (synthetic); target Group"),
    Builtin("kaggle_alzheimer",    _ALZ,                  "classification", _N,   9,  3,    ALZHEIMER_TARGET,
            "Kaggle OASIS longitudinal MRI CSV; falls back to synthetic data if absent"),
    Builtin("breast_cancer",       _SK + "breast_cancer", "classification", 569,  30, 2,    "target",
            "Wisconsin breast cancer (scikit-learn, 569 rows, binary classification)", federated=True),
    Builtin("diabetes",            _SK + "diabetes",      "regression",     442,  10, None, "disease_progression",
            "Diabetes progression (scikit-learn, 442 rows, regression)"),
    Builtin("digits",              _SK + "digits",        "classification", 1797, 64, 10,   "target",
            "Handwritten digits 8x8 (scikit-learn, 1797 rows, 10 classes)", federated=True),
    Builtin("wine",                _SK + "wine",          "classification", 178,  13, 3,    "target",
            "Wine cultivars (scikit-learn, 178 rows, 3 classes)", federated=True),
    Builtin("mri",                 "mri",                 "classification", 4 * MRI_PER_CLASS, None, 4, "label",
            "Synthetic brain-MRI slices, 4 tumour classes (federated sites only)", jobs=False, federated=True),
)}
# fmt: on

# What a job may name as ``dataset_source``, with a line each for listings.
DATASET_SOURCES: dict[str, str] = {
    **{b.name: b.description for b in BUILTINS.values() if b.jobs},
    USER_PROVIDED: "An uploaded table, decrypted by the vault; the caller names the target column",
}
# What a federated site or the server-side evaluation may name as ``builtin:<name>``.
FEDERATED_BUILTINS: tuple[str, ...] = tuple(b.name for b in BUILTINS.values() if b.federated)


def _check_target(source: str, target: str | None, expected: str) -> None:
    if target is not None and target != expected:
        raise Invalid(f"dataset {source!r} has the fixed target {expected!r}; got {target!r}")


def _alzheimer_dataset(frame: pd.DataFrame, meta: dict[str, Any]) -> Dataset:
    return frame_to_dataset(
        frame,
        ALZHEIMER_TARGET,
        task="classification",
        drop=[c for c in ALZHEIMER_NON_FEATURES if c != "Subject ID"],
        group_column="Subject ID",
        meta=meta,
    )


def synthetic_alzheimer(seed: int = 0, n_samples: int = SYNTHETIC_SAMPLES) -> Dataset:
    meta = {"source": "synthetic_test_data", "synthetic": True, "synthetic_fallback": False, "seed": seed}
    return _alzheimer_dataset(oasis_like_frame(n_samples, seed), meta)


def read_kaggle_alzheimer(path: str | Path) -> pd.DataFrame:
    """Read the Kaggle OASIS longitudinal CSV, checking that its columns are the Kaggle ones."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise Invalid(f"the Kaggle Alzheimer file could not be read as CSV ({type(exc).__name__})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in KAGGLE_COLUMNS if c not in frame.columns and c != "Hand"]
    if missing:
        raise Invalid(f"the Kaggle Alzheimer file lacks columns: {', '.join(missing)}")
    return frame


def kaggle_alzheimer(path: str | Path | None, seed: int = 0) -> Dataset:
    """The real Kaggle file when ``path`` exists, else synthetic data flagged as a fallback."""
    if path is None or not Path(path).is_file():
        reason = "no Kaggle file configured" if path is None else "Kaggle file not found"
        meta = {
            "source": "kaggle_alzheimer",
            "synthetic": True,
            "synthetic_fallback": True,
            "fallback_reason": f"{reason}; trained on synthetic OASIS-like data instead",
            "seed": seed,
        }
        return _alzheimer_dataset(oasis_like_frame(SYNTHETIC_SAMPLES, seed), meta)
    meta = {"source": "kaggle_alzheimer", "synthetic": False, "synthetic_fallback": False}
    return _alzheimer_dataset(read_kaggle_alzheimer(path), meta)


def _bundled_digits() -> Dataset | None:
    """scikit-learn's digits read straight from the CSV its wheel ships, without importing sklearn.

    ``import sklearn`` pulls in scipy, pandas and joblib (1-3 s); a federated site on ``builtin:digits``
    needs none of them. Same file, parsing and names as ``sklearn.datasets.load_digits``; None when
    the file is not where that loader keeps it (then the loader itself is used).
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        return None
    raw = np.loadtxt(path, delimiter=",")
    X, y = np.ascontiguousarray(raw[:, :-1], dtype=np.float64), raw[:, -1].astype(np.int64)
    features = [f"pixel_{row}_{col}" for row in range(8) for col in range(8)]
    meta: dict[str, Any] = {
        "source": "digits",
        "synthetic": False,
        "synthetic_fallback": False,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "target": "target",
    }
    return Dataset(X, y, features, [str(d) for d in range(10)], "classification", meta)


def sklearn_dataset(name: str) -> Dataset:
    """One of scikit-learn's bundled datasets (shipped inside the wheel: nothing is downloaded)."""
    if name == "digits" and (digits := _bundled_digits()) is not None:
        return digits
    from sklearn import datasets

    bunch = getattr(datasets, BUILTINS[name].loader.removeprefix("sklearn:"))()
    X = np.asarray(bunch.data, dtype=np.float64)
    features = [str(f) for f in bunch.feature_names] if "feature_names" in bunch else []
    if len(features) != X.shape[1]:
        features = [f"pixel_{i}" for i in range(X.shape[1])]
    meta: dict[str, Any] = {
        "source": name,
        "synthetic": False,
        "synthetic_fallback": False,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
    }
    meta["target"] = BUILTINS[name].target
    if BUILTINS[name].task == "regression":
        return Dataset(X, np.asarray(bunch.target, dtype=np.float64), features, None, "regression", meta)
    names = [str(t) for t in bunch.target_names]
    return Dataset(X, np.asarray(bunch.target, dtype=np.int64), features, names, "classification", meta)


def load_dataset(
    source: str,
    *,
    target: str | None = None,
    frame: pd.DataFrame | None = None,
    kaggle_path: str | Path | None = None,
    seed: int = 0,
    task: str | None = None,
) -> Dataset:
    """Load a named source. ``frame``/``target`` (and optionally ``task``) are for ``user_provided``."""
    if source not in DATASET_SOURCES:
        raise Invalid(
            f"unknown dataset source {source!r}; valid choices: {', '.join(DATASET_SOURCES)}",
            choices=list(DATASET_SOURCES),
        )
    if source != USER_PROVIDED:
        if frame is not None:
            raise Invalid(f"dataset {source!r} is built in; a data frame is only accepted for user_provided")
        entry = BUILTINS[source]
        _check_target(source, target, entry.target)
        if source == "synthetic_test_data":
            return synthetic_alzheimer(seed)
        if source == "kaggle_alzheimer":
            return kaggle_alzheimer(kaggle_path, seed)
        return sklearn_dataset(source)
    if frame is None:
        raise Invalid("user_provided needs an uploaded dataset")
    if not target:
        raise Invalid("user_provided needs the name of the target column")
    meta = {"source": "user_provided", "synthetic": False, "synthetic_fallback": False}
    return frame_to_dataset(frame, target, task=task, meta=meta)
