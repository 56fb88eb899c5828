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


def test_job_path_skips_skops_type_walks_and_leaves_everything_importable() -> None:
    """Writing a model loads neither sklearn.ensemble nor skops' ufunc walk; both work afterwards."""
    code = (
        "import sys\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import Pipeline\n"
        "from bastion.ml.serialize import dump_sklearn, load_sklearn\n"
        "p = Pipeline([('m', LogisticRegression())]).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])\n"
        "blob = dump_sklearn(p)\n"
        "print('sklearn.ensemble' in sys.modules, None in sys.modules.values())\n"
        "import numpy, skops.io._utils as u\n"
        "print(len(u.get_public_type_names(module=numpy, oftype=numpy.ufunc)) > 10)\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "f = Pipeline([('m', RandomForestClassifier(n_estimators=3, random_state=0))])\n"
        "f.fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])\n"
        "print(load_sklearn(dump_sklearn(f)).predict([[3.0]])[0], load_sklearn(blob).predict([[0.0]])[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True", "1", "0"]
