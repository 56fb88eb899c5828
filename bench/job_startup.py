"""A job process's fixed start-up for a small scikit-learn job, against a bare script, same run.

Both are fresh ``python -c`` processes that fit the same tiny pipeline (StandardScaler +
LogisticRegression on 40 rows) and serialize it, timed from spawn to exit:

* **bare**: scikit-learn and ``pickle``: the least a script doing this job must import;
* **job path**: what a Bastion job process adds: ``bastion.jobs.child`` and the model file written
  with :func:`bastion.ml.serialize.dump_sklearn` (skops, the format jobs store).

``job_startup_extra_s`` is median(job path) - median(bare) (goal <= 1 s); ``job_startup_ratio`` is
their ratio. ``--unpatched`` also times ``import skops.io`` the ordinary way, to show what the lazy
import saves.

    .venv/bin/python bench/job_startup.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

FIT = (
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.pipeline import Pipeline\n"
    "from sklearn.preprocessing import StandardScaler\n"
    "X = [[i % 7, i % 3] for i in range(40)]; y = [i % 2 for i in range(40)]\n"
    "p = Pipeline([('s', StandardScaler()), ('m', LogisticRegression())]).fit(X, y)\n"
)
BARE = FIT + "import pickle; blob = pickle.dumps(p)\n"
JOB = (
    "import bastion.jobs.child\n"
    + FIT
    + "from bastion.ml.serialize import dump_sklearn; blob = dump_sklearn(p)\n"
)
UNPATCHED = FIT + "import skops.io as sio, zipfile; blob = sio.dumps(p, compression=zipfile.ZIP_DEFLATED)\n"


def spawn(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--unpatched", action="store_true", help="also time skops' own import")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"bare": [], "job": [], "unpatched": []}
    for _ in range(args.repeat):  # taken in turn, so all see the same load
        runs["bare"].append(spawn(BARE))
        runs["job"].append(spawn(JOB))
        if args.unpatched:
            runs["unpatched"].append(spawn(UNPATCHED))
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    print(f"job_startup_extra_s: {med['job'] - med['bare']:.2f}")
    print(f"job_startup_ratio: {med['job'] / med['bare']:.2f}")
    print()
    for name, values in runs.items():
        if values:
            print(f"  {name:>9}: median {med[name]:.2f} s  runs {[round(v, 2) for v in values]}")
    print(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
