"""A real local Ray cluster for the tests: token authentication, 127.0.0.1, 2 CPUs, no dashboard.

Started once per session by the ``ray_cluster`` fixture (tests/jobs/conftest.py) and stopped at the
end by killing exactly the processes whose command line names its private temp directory. Its
workers import ``tests.*`` (PYTHONPATH) and write job markers into ``markers``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port
from tests.jobs.support import REPO, pid_gone, wait_for

_SECRET_ENV = ("BASTION_MASTER_KEY", "BASTION_DATABASE_URL", "BASTION_JWT_SECRET", "BASTION_API_KEY")


@dataclass
class RayCluster:
    address: str
    token: str
    temp_dir: Path
    markers: Path

    def env(self) -> dict[str, str]:
        """What a process needs to reach the cluster: the auth mode and the token."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}


def start_cluster(worker_niceness: int | None = None) -> RayCluster:
    """``worker_niceness``: Ray starts its workers at nice 15 by default (``RAY_worker_niceness``), so
    on a machine shared with other work they yield the CPU to everything else; a benchmark against an
    in-process baseline (nice 0) passes 0 for a like-for-like comparison."""
    temp = Path(tempfile.mkdtemp(prefix="bray", dir="/tmp"))  # short: Ray's socket paths have a limit
    markers = temp / "markers"
    markers.mkdir()
    token = secrets.token_hex(32)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        PYTHONPATH=str(REPO),
        BASTION_TEST_JOB_DIR=str(markers),
        RAY_USAGE_STATS_ENABLED="0",
    )
    if worker_niceness is not None:
        env["RAY_worker_niceness"] = str(worker_niceness)
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            # A free port, not Ray's fixed default, so two clusters on one machine cannot collide. (No
            # Ray Client server: Bastion connects through the GCS address, and since Ray 2.60 naming its
            # port needs the optional ray[client] package.)
            f"--dashboard-agent-listen-port={free_port()}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--object-store-memory=200000000",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    if started.returncode != 0:
        shutil.rmtree(temp, ignore_errors=True)
        tail = started.stdout.decode(errors="replace")[-4000:]
        raise RuntimeError(f"ray start failed (exit {started.returncode}):\n{tail}")
    return RayCluster(f"127.0.0.1:{port}", token, temp, markers)


def _our_pids(cluster: RayCluster) -> list[int]:
    """Processes of this cluster: its temp dir on their command line or its token in their environment,
    and the agents its raylet started (they rename themselves, e.g. ``ray::DashboardAgent``, and carry
    only ``RAY_RAYLET_PID``)."""
    marks = (str(cluster.temp_dir).encode(), f"RAY_AUTH_TOKEN={cluster.token}".encode())
    seen: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            seen[int(entry.name)] = (
                (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
            )
    pids = {pid for pid, text in seen.items() if any(mark in text for mark in marks)}
    parents = {f"RAY_RAYLET_PID={pid}\0".encode() for pid in pids}
    pids |= {pid for pid, text in seen.items() if any(parent in text for parent in parents)}
    return sorted(pids)


def stop_cluster(cluster: RayCluster) -> None:
    """Kill the cluster's own processes (found by its temp dir), never other users' Ray."""
    pids = _our_pids(cluster)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: all(pid_gone(p) for p in pids), 5, what="ray processes to exit")
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
