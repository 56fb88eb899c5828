"""``builtin:digits`` read without importing scikit-learn is exactly scikit-learn's ``load_digits``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

from bastion.data.builtin import _bundled_digits


def test_same_data_names_and_labels_as_load_digits() -> None:
    ours = _bundled_digits()
    assert ours is not None
    ref = load_digits()
    np.testing.assert_array_equal(ours.X, ref.data)
    np.testing.assert_array_equal(ours.y, ref.target)
    assert ours.X.dtype == np.float64 and ours.y.dtype == np.int64
    assert ours.feature_names == list(ref.feature_names)
    assert ours.target_names == [str(t) for t in ref.target_names]


def test_loading_digits_does_not_import_sklearn() -> None:
    code = (
        "import sys; from bastion.data.builtin import sklearn_dataset; "
        "d = sklearn_dataset('digits'); print(d.X.shape, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1797, 64) False"
