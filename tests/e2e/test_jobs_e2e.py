"""Training jobs against real `bastion serve` / `bastion worker` processes.

The quick start runs real training exactly as seeds/000 shows it, with curl. The crash tests run a
controlled job target (BASTION_JOB_TARGET) so they can stop jobs mid-run deterministically.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.client import open_download
from tests.conftest import ServerProcess
from tests.jobs.support import REPO, pid_gone, wait_for

pytestmark = pytest.mark.e2e
T = "/api/v1/training"


def curl(*args: str) -> Any:
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "60", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_quick_start_with_curl_exactly_as_documented(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory().start()
    base = f"http://localhost:{server.port}"
    key = server.keys["user"]

    health = curl(f"{base}/api/v1/health")
    assert health["status"] == "healthy" and health["components"]["training_manager"] == "operational"
    assert {"api", "training_manager", "security"} <= set(health["components"])

    submitted = curl(
        "-X", "POST", f"{base}/api/v1/training/submit",
        "-H", f"X-API-Key: {key}",
        "-H", "Content-Type: application/json",
        "-d", '{\n    "model_type": "alzheimer_classifier",\n    "dataset_source": "synthetic_test_data"\n  }',
    )  # fmt: skip
    assert submitted["success"] is True and submitted["message"] == "Training job submitted successfully"
    job_id = submitted["job_id"]

    def finished() -> dict[str, Any] | None:
        status = curl("-H", f"X-API-Key: {key}", f"{base}/api/v1/training/status/{job_id}")
        return status if status["status"] in ("completed", "failed") else None

    status = wait_for(finished, 600, 1.0, "the quick-start job")
    assert status["status"] == "completed", status["error_message"]
    assert status["progress"] == 1.0 and status["created_at"] and status["completed_at"]
    results = status["results"]
    for field in (
        "training_accuracy",
        "model_type",
        "training_samples",
        "feature_count",
        "training_duration_seconds",
    ):
        assert field in results
    assert results["model_type"] == "alzheimer_classifier" and results["feature_count"] == 9

    model = curl("-H", f"X-API-Key: {key}", f"{base}/api/v1/training/model/{job_id}")
    assert model["success"] is True and model["job_id"] == job_id and model["encrypted_model"]
    opened = open_download(model, api_key=key)
    assert opened.model_format == "skops" and opened.predictor().classes
    admin = curl("-H", f"X-API-Key: {server.keys['admin']}", f"{base}/api/v1/admin/training/status")
    assert (
        admin["completed_jobs"] == 1 and admin["max_concurrent_jobs"] == 3 and admin["system_healthy"] is True
    )


def _controlled_env(tmp_path: Path, target: str) -> dict[str, str]:
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    return {
        "BASTION_JOB_TARGET": f"tests.jobs.fake_targets:{target}",
        "BASTION_TEST_JOB_DIR": str(markers),
        "PYTHONPATH": str(REPO),
    }


def _submit(server: ServerProcess, n: int) -> list[str]:
    headers = {"X-API-Key": server.keys["user"]}
    body = {"model_type": "alzheimer_classifier", "dataset_source": "wine"}
    return [
        httpx.post(server.url + f"{T}/submit", json=body, headers=headers).json()["job_id"] for _ in range(n)
    ]


def _status(url: str, key: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(url + f"{T}/status/{job_id}", headers={"X-API-Key": key}).json()
    return body


def test_kill_9_while_jobs_run_then_restart(
    server_factory: Callable[..., ServerProcess], db_url: str, tmp_path: Path
) -> None:
    env = _controlled_env(tmp_path, "block")
    markers = Path(env["BASTION_TEST_JOB_DIR"])
    server = server_factory(db_url=db_url, BASTION_MAX_CONCURRENT_JOBS="2", **env).start()
    key = server.keys["user"]
    jobs = _submit(server, 3)
    wait_for(lambda: len(list(markers.glob("*.1.started"))) == 2, 120, what="two jobs to run")
    running = [j for j in jobs if (markers / f"{j}.1.started").exists()]
    waiting = [j for j in jobs if j not in running]
    pids = [json.loads((markers / f"{j}.1.started").read_text())["pid"] for j in running]
    assert [_status(server.url, key, j)["status"] for j in jobs].count("running") == 2

    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    for pid in pids:  # the jobs notice their worker is gone and exit; no orphan trains on
        wait_for(lambda pid=pid: pid_gone(pid), 30, what=f"job process {pid} to exit")
    for job_id in jobs:
        (markers / f"{job_id}.release").write_text("go")

    again = ServerProcess(server.data_dir, server.env, []).start()
    try:

        def all_done() -> list[dict[str, Any]] | None:
            found = [_status(again.url, key, j) for j in jobs]
            return found if all(s["status"] == "completed" for s in found) else None

        final = {
            s["job_id"]: s for s in wait_for(all_done, 120, 0.2, "every job to complete after the restart")
        }
        assert [final[j]["attempt"] for j in running] == [2, 2], "interrupted jobs ran once more"
        assert [final[j]["attempt"] for j in waiting] == [1]
        logs = httpx.get(again.url + f"{T}/jobs/{running[0]}/logs", headers={"X-API-Key": key}).json()
        assert any("re-queued: interrupted (its worker process died)" in ln["line"] for ln in logs["lines"])
        admin_key = {"X-API-Key": server.keys["admin"]}
        admin = httpx.get(again.url + "/api/v1/admin/training/status", headers=admin_key).json()
        assert (admin["active_jobs"], admin["pending_jobs"], admin["completed_jobs"]) == (0, 0, 3)
    finally:
        again.stop()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_standalone_worker_shares_the_queue(
    server_factory: Callable[..., ServerProcess], db_url: str, tmp_path: Path
) -> None:
    env = _controlled_env(tmp_path, "quick")
    server = server_factory(db_url=db_url, args=["--no-worker"], **env).start()
    key = server.keys["user"]
    health = httpx.get(server.url + "/api/v1/health").json()
    assert health["components"]["training_manager"] == "unavailable"
    (job_id,) = _submit(server, 1)
    assert _status(server.url, key, job_id)["status"] == "pending"

    worker = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "worker", "--concurrency", "2"],
        env=server.env, cwd=server.data_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        done = wait_for(
            lambda: s if (s := _status(server.url, key, job_id))["status"] == "completed" else None, 120, 0.2
        )
        assert done["results"]["accuracy"] == 0.8 and done["attempt"] == 1
        admin = httpx.get(
            server.url + "/api/v1/admin/training/status", headers={"X-API-Key": server.keys["admin"]}
        )
        workers = admin.json()["workers"]
        assert len(workers) == 1 and workers[0]["max_concurrent"] == 2 and workers[0]["pid"] == worker.pid
        assert (
            httpx.get(server.url + "/api/v1/health").json()["components"]["training_manager"] == "operational"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0 and "worker stopped" in output
