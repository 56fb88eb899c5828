"""Job overhead: the same training as a Bastion job and as a bare script, in the same run.

The bare baseline is a fresh ``python -c`` process that loads the dataset and calls
``bastion.ml.train.train`` (which fits, evaluates and serializes): exactly the work a job does, minus
the queue, the job process plumbing, progress written to the store and the vault. It is timed from
spawn to exit. The job is timed from just before ``submit`` to the moment its status reads
``completed``: the duration of the submit call plus the store's ``created_at -> completed_at`` (the
store is polled slowly, so the poll does not steal CPU from the training it measures). The embedded
worker is idle at submit time, so ``started_at - created_at`` is the submit-to-running latency with
free capacity.

Prints ``job_overhead_ratio`` (median job time / median bare time, goal <= 1.15) and
``submit_to_running_ratio`` (median latency / 0.5 s goal, goal < 1) first, then the raw figures.

    .venv/bin/python bench/job_overhead.py                 # seeds' quick start: default params, 3 runs
    .venv/bin/python bench/job_overhead.py --quick         # logistic regression, 2 runs
    .venv/bin/python bench/job_overhead.py --model-type adaptive_neural_net --dataset wine --params '{"epochs": 30}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40
LATENCY_GOAL = 0.5
# The bare script leaves with os._exit, as a job process does: interpreter teardown with scikit-learn,
# pandas and torch loaded takes about a second, and the job must not look cheaper by skipping it.
BARE = """
import json, os, sys
from bastion.data.builtin import load_dataset
from bastion.ml.train import train
result = train(sys.argv[1], load_dataset(sys.argv[2]), json.loads(sys.argv[3]), seed=0)
print(json.dumps({"train_seconds": result.metrics["training_duration_seconds"]}), flush=True)
os._exit(0)
"""


def bare_run(model_type: str, dataset: str, params: dict[str, Any]) -> dict[str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BARE, model_type, dataset, json.dumps(params)],
        check=True,
        capture_output=True,
        text=True,
        # Its own session, like a job process: with the kernel's autogroup scheduling a new session
        # gets its own share of a busy CPU, so both sides must be alike.
        start_new_session=True,
    )
    total = time.perf_counter() - start
    return {"total": total, "train": float(json.loads(done.stdout.strip().splitlines()[-1])["train_seconds"])}


class JobBench:
    """A real context with the embedded worker, on SQLite in a throw-away data dir."""

    def __init__(self, root: Path, database_url: str | None) -> None:
        from bastion.auth.principal import Principal
        from bastion.config import Settings
        from bastion.context import build_context
        from bastion.wiring import install_services

        settings = Settings(
            data_dir=root / "data",
            database_url=database_url or f"sqlite:///{root / 'bench.db'}",
            master_key=MASTER,
            jwt_secret=JWT,
        )
        self.ctx = build_context(settings)
        install_services(self.ctx)
        user = self.ctx.accounts.create_user(f"bench-{int(time.time() * 1000)}", "user")
        self.principal = Principal(user.id, user.username, "user", "api_key")
        self.svc = self.ctx.services.jobs
        self.worker = self.ctx.services.worker
        self.worker.start()

    def run(self, model_type: str, dataset: str, params: dict[str, Any]) -> dict[str, float]:
        """Time one job. Polling the store often would steal CPU from the training it measures,
        so the end comes from the store's own ``completed_at``; only the first moments are polled fast."""
        from bastion.jobs.service import SubmitRequest

        start = time.perf_counter()
        request = SubmitRequest(model_type=model_type, dataset_source=dataset, params=params)
        job = self.svc.submit(self.principal, request)
        submit_seconds = time.perf_counter() - start
        running_seen: float | None = None
        while True:
            current = self.svc.get(self.principal, job.id)
            if running_seen is None and current.state != "pending":
                running_seen = time.perf_counter() - start
            if current.state in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.005 if running_seen is None else 0.5)
        if current.state != "completed":
            raise SystemExit(f"job {current.state}: {current.error_message}")
        assert current.started_at is not None and current.completed_at is not None
        results = current.results or {}
        return {
            # submit call (it includes creating the row) + the store's created_at -> completed_at
            "total": submit_seconds + (current.completed_at - current.created_at).total_seconds(),
            "train": float(results.get("training_duration_seconds", 0.0)),
            "submit_to_running_db": (current.started_at - current.created_at).total_seconds(),
            "submit_to_running_seen": running_seen or 0.0,
        }

    def close(self) -> None:
        self.ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-type", default="alzheimer_classifier")
    parser.add_argument("--dataset", default="synthetic_test_data")
    parser.add_argument("--params", default="{}", help="JSON object of hyper-parameters")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="logistic regression, no importance, 2 runs")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    from bastion import logs

    logs.configure("error")  # keep the worker's info lines out of the report
    params: dict[str, Any] = json.loads(args.params)
    repeats = args.repeats
    if args.quick:
        params = {"estimator": "logistic_regression", "importance_repeats": 0, **params}
        repeats = min(repeats, 2)

    bare: list[dict[str, float]] = []
    jobs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        bench = JobBench(Path(tmp), args.database_url)
        try:
            bare_run(args.model_type, args.dataset, params)  # warm the page cache for both sides
            for i in range(repeats):
                # Alternate the order so slow drift on a shared machine hits both sides alike.
                if i % 2 == 0:
                    bare.append(bare_run(args.model_type, args.dataset, params))
                    jobs.append(bench.run(args.model_type, args.dataset, params))
                else:
                    jobs.append(bench.run(args.model_type, args.dataset, params))
                    bare.append(bare_run(args.model_type, args.dataset, params))
        finally:
            bench.close()

    bare_median = statistics.median(b["total"] for b in bare)
    job_median = statistics.median(j["total"] for j in jobs)
    latency = statistics.median(j["submit_to_running_db"] for j in jobs)
    print(f"job_overhead_ratio: {job_median / bare_median:.3f}")
    print(f"submit_to_running_ratio: {latency / LATENCY_GOAL:.3f}")
    print(
        f"model_type: {args.model_type}  dataset: {args.dataset}  params: {json.dumps(params)}  runs: {repeats}"
    )

    def series(values: list[float], digits: int = 3) -> str:
        return " ".join(f"{v:.{digits}f}" for v in values)

    print(f"bare_seconds: {series([b['total'] for b in bare])}  (median {bare_median:.3f})")
    print(f"job_seconds: {series([j['total'] for j in jobs])}  (median {job_median:.3f})")
    print(f"job_minus_bare_seconds: {job_median - bare_median:+.3f}")
    # Time inside train() on each side: differences here are machine noise, not job overhead.
    print(
        f"inside_train_seconds bare: {series([b['train'] for b in bare])}  job: {series([j['train'] for j in jobs])}"
    )
    outside = [j["total"] - j["train"] for j in jobs]
    outside_bare = [b["total"] - b["train"] for b in bare]
    print(f"outside_train_seconds bare: {series(outside_bare)}  job: {series(outside)}")
    print(f"submit_to_running_seconds (store): {series([j['submit_to_running_db'] for j in jobs], 4)}")
    print(
        f"submit_to_running_seconds (seen by polling): {series([j['submit_to_running_seen'] for j in jobs], 4)}"
    )


if __name__ == "__main__":
    main()
