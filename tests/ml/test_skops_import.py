"""Job processes import skops.io without scikit-learn's estimator walk (and so without torch)."""

from __future__ import annotations

import subprocess
import sys


def test_skops_io_import_leaves_torch_out_and_still_round_trips() -> None:
    code = (
        "import sys\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import Pipeline\n"
        "from bastion.ml.serialize import dump_sklearn, load_sklearn\n"
        "p = Pipeline([('m', LogisticRegression())]).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])\n"
        "again = load_sklearn(dump_sklearn(p))\n"
        "print(again.predict([[3.0]])[0], 'torch' in sys.modules)\n"
        "import sklearn.utils; print(len(sklearn.utils.all_estimators()) > 50)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False", "True"]
