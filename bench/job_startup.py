"""A job process's fixed start-up for a small scikit-learn job, against a bare script, same run.

Both are fresh ``python -c`` processes that fit the same tiny pipeline (StandardScaler +
LogisticRegression on 40 rows) and serialize it, timed from spawn to exit:

* **bare**: scikit-learn and ``pickle``: the least a script doing this job must import;
* **job path**: what a Bastion job process adds: ``bastion.jobs.child`` and the model file written
  with :func:`bastion.ml.serialize.dump_sklearn` (skops, the format jobs store).

``job_startup_extra_s`` is median(job path) - median(bare) (goal <= 1 s); ``job_startup_ratio`` is
their ratio. ``--unpatched`` also times ``import skops.io`` the ordinary way, and ``--previous`` the
first patch alone (only ``all_estimators`` disabled, as before issue 16's second pass), to show what
each saves in the same run.

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
PREVIOUS = (
    "import bastion.jobs.child\n"
    + FIT
    + "import sklearn.utils, zipfile; real = sklearn.utils.all_estimators\n"
    "sklearn.utils.all_estimators = lambda *a, **k: []\n"
    "import skops.io as sio; sklearn.utils.all_estimators = real\n"
    "blob = sio.dumps(p, compression=zipfile.ZIP_DEFLATED, compresslevel=6)\n"
)
UNPATCHED = FIT + "import skops.io as sio, zipfile; blob = sio.dumps(p, compression=zipfile.ZIP_DEFLATED)\n"


def spawn(code: str) -> tuple[float, float]:
    """Wall-clock seconds from spawn to exit, and the CPU seconds (user + system) the process used.

    CPU time is what a loaded machine distorts least: wall time there is mostly waiting for a core.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"benchmark process failed with status {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--unpatched", action="store_true", help="also time skops' own import")
    parser.add_argument("--previous", action="store_true", help="also time the all_estimators patch alone")
    args = parser.parse_args()
    codes = {"bare": BARE, "job": JOB}
    if args.previous:
        codes["previous"] = PREVIOUS
    if args.unpatched:
        codes["unpatched"] = UNPATCHED
    runs: dict[str, list[float]] = {name: [] for name in codes}
    cpu: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(args.repeat):  # taken in turn, so all see the same load
        for name, code in codes.items():
            wall, used = spawn(code)
            runs[name].append(wall)
            cpu[name].append(used)
    med = {k: statistics.median(v) for k, v in runs.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"job_startup_extra_s: {med['job'] - med['bare']:.2f}")
    print(f"job_startup_ratio: {med['job'] / med['bare']:.2f}")
    print(f"job_startup_extra_cpu_s: {mcpu['job'] - mcpu['bare']:.2f}")
    for name in ("previous", "unpatched"):
        if name in med:
            print(f"job_startup_{name}_extra_s: {med[name] - med['bare']:.2f}")
            print(f"job_startup_{name}_extra_cpu_s: {mcpu[name] - mcpu['bare']:.2f}")
    print()
    for name, values in runs.items():
        print(
            f"  {name:>9}: median {med[name]:.2f} s wall, {mcpu[name]:.2f} s CPU;"
            f"  wall runs {[round(v, 2) for v in values]}"
        )
    print(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
