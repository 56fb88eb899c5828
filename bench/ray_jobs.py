"""Ray executor against the local executor: per-job overhead and throughput, same jobs, same run.

Starts a private Ray cluster on 127.0.0.1 with token authentication (2 CPUs, as the tests do), then
runs the same jobs through two Bastion workers over one SQLite store: one with the local executor
(a process per job), one with the Ray executor (a Ray task per job). Each worker runs up to two
jobs at once.

* per-job overhead: a job whose target works for ``--seconds`` (default 30), timed from submit to
  ``completed`` in the store, on each executor; ``ray_job_overhead_ratio`` = Ray / local (goal <= 1.2).
* throughput: ``--jobs`` (default 100) small jobs (three fake epochs, no training) submitted at once;
  ``ray_throughput_ratio`` = local jobs/s / Ray jobs/s (goal <= 2, i.e. Ray within 2x of local).

    .venv/bin/python bench/ray_jobs.py            # 30 s job, 100 small jobs
    .venv/bin/python bench/ray_jobs.py --quick    # 5 s job, 20 small jobs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40


def busy(ctx: Any) -> dict[str, Any]:
    """A job target that works (spins the CPU) for ``params.seconds``, reporting progress each second."""
    seconds = float(ctx.spec["params"].get("seconds", 30))
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            sum(range(1000))
        ctx.progress(min(1.0, elapsed / seconds), {"stage": "work"})
    return {"results": {"seconds": seconds}}


class Side:
    def __init__(self, root: Path, name: str, cluster: Any, markers: Path) -> None:
        from bastion.auth.principal import Principal
        from bastion.config import Settings
        from bastion.context import build_context
        from bastion.wiring import install_services

        settings = Settings(
            data_dir=root / name,
            database_url=f"sqlite:///{root / (name + '.db')}",
            master_key=MASTER,
            jwt_secret=JWT,
            embedded_worker=False,
        )
        self.ctx = build_context(settings)
        install_services(self.ctx)
        user = self.ctx.accounts.create_user(f"bench-{name}", "user")
        self.principal = Principal(user.id, user.username, "user", "api_key")
        self.name, self.cluster, self.markers = name, cluster, markers
        self.worker: Any = None
        self.seconds = 30.0

    def start(self, target: str) -> None:
        from bastion.jobs.config import JobConfig
        from bastion.jobs.executors.ray import RayExecutor
        from bastion.jobs.hooks import make_worker
        from bastion.jobs.service import JobService

        previous = self.worker
        config = JobConfig(
            max_concurrent=2,
            max_active_per_user=1000,
            poll_seconds=0.05,
            target=target,
            child_env={
                "PYTHONPATH": str(REPO),
                "BASTION_TEST_JOB_DIR": str(self.markers),
                "BENCH_SECONDS": str(self.seconds),
            },
        )
        self.ctx.services.jobs = JobService(self.ctx, config)
        executor = None
        if self.name == "ray":
            executor = RayExecutor.connect(self.cluster.address, insecure=False, vault=self.ctx.vault)
        self.worker = make_worker(self.ctx, config, executor=executor, registrar=None)
        if previous is not None:
            # Closed after the new executor connected: the last close would end this process's Ray
            # connection, and a new connection (a new Ray job) cannot reuse the warm Ray workers.
            previous.close()
        self.ctx.services.worker = self.worker
        self.worker.start()

    def run(self, count: int) -> float:
        """Submit ``count`` jobs at once; seconds until the last one completed."""
        from bastion.jobs.service import SubmitRequest

        svc = self.ctx.services.jobs
        start = time.perf_counter()
        ids = [
            svc.submit(
                self.principal,
                SubmitRequest(
                    model_type="alzheimer_classifier",
                    dataset_source="synthetic_test_data",
                    resources={"cpus": 1},
                ),
            ).id
            for _ in range(count)
        ]
        pending = set(ids)
        while pending:
            for job_id in list(pending):
                job = svc.get_any(job_id)
                if job.state in ("failed", "cancelled"):
                    raise SystemExit(f"{self.name}: job {job.state}: {job.error_message}")
                if job.state == "completed":
                    pending.discard(job_id)
            time.sleep(0.2)
        return time.perf_counter() - start

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.ctx.close()


def main() -> None:
    import os

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--ray-niceness",
        type=int,
        default=0,
        help="nice value of the Ray workers (Ray's own default is 15: they yield to every other "
        "process, which on a shared machine starves them against the nice-0 baseline)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.jobs = 5.0, 20
    from bastion import logs
    from tests.jobs.ray_cluster import start_cluster, stop_cluster

    logs.configure("error")
    cluster = start_cluster(args.ray_niceness)
    os.environ.update(cluster.env())
    figures: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
            sides = [Side(Path(tmp), name, cluster, cluster.markers) for name in ("local", "ray")]
            try:
                for side in sides:
                    side.seconds = args.seconds
                    side.start("tests.jobs.fake_targets:quick")
                    side.run(2)  # start-up (first Ray workers, imports) is not counted
                    many = side.run(args.jobs)
                    side.start("bench.ray_jobs:busy_from_env")
                    long_job = side.run(1)
                    figures[side.name] = {"long": long_job, "many": many}
            finally:
                for side in sides:
                    side.close()
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        stop_cluster(cluster)
    local, remote = figures["local"], figures["ray"]
    print(f"ray_niceness: {args.ray_niceness}  load: {Path('/proc/loadavg').read_text().split()[0]}")
    print(f"ray_job_overhead_ratio: {remote['long'] / local['long']:.3f}")
    print(f"ray_throughput_ratio: {(args.jobs / local['many']) / (args.jobs / remote['many']):.3f}")
    print(f"job_seconds ({args.seconds:g} s of work) local: {local['long']:.3f}  ray: {remote['long']:.3f}")
    print(f"{args.jobs}_small_jobs_seconds local: {local['many']:.3f}  ray: {remote['many']:.3f}")
    print(
        f"throughput_jobs_per_second local: {args.jobs / local['many']:.2f}  ray: {args.jobs / remote['many']:.2f}"
    )


def busy_from_env(ctx: Any) -> dict[str, Any]:
    """``busy`` for the number of seconds in BENCH_SECONDS (set on the cluster via the job's env)."""
    import os

    ctx.spec = dict(ctx.spec, params={"seconds": float(os.environ.get("BENCH_SECONDS", "30"))})
    return busy(ctx)


if __name__ == "__main__":
    main()
