"""A job process on its own (no database): the pipe protocol, kills, timeouts and orphans."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bastion.jobs.config import JobConfig
from bastion.jobs.executor import JobProcess
from tests.jobs.support import REPO, pid_gone, wait_for


def _config(tmp_path: Path, target: str, **kw: Any) -> JobConfig:
    env = {"PYTHONPATH": str(REPO), "BASTION_TEST_JOB_DIR": str(tmp_path)}
    return JobConfig(target=f"tests.jobs.fake_targets:{target}", child_env=env, **kw)


def _run(tmp_path: Path, target: str, deadline: float = 60, **kw: Any) -> tuple[Any, list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    proc = JobProcess({"job_id": "j1", "attempt": 1, "model_type": "m"}, {}, _config(tmp_path, target, **kw))
    proc.start()
    outcome = proc.run(
        lambda kind, payload: seen.append((kind, payload)), deadline=time.monotonic() + deadline
    )
    return outcome, seen


def test_result_progress_and_output_arrive(tmp_path: Path) -> None:
    outcome, seen = _run(tmp_path, "quick")
    assert outcome.returncode == 0 and outcome.killed is None and outcome.protocol_errors == 0
    assert outcome.result is not None and outcome.result["results"]["accuracy"] == 0.8
    epochs = [p[1]["epoch"] for k, p in seen if k == "progress" and "epoch" in p[1]]
    assert epochs == [1, 2, 3]
    assert ("log", ("stdout", "hello from the job")) in seen
    assert ("log", ("job", "evaluated")) in seen


def test_exception_becomes_an_error_message(tmp_path: Path) -> None:
    outcome, seen = _run(tmp_path, "fail")
    assert outcome.error == {
        "type": "error",
        "code": "job_error",
        "message": "ValueError: boom: the data was bad",
    }
    assert outcome.reason(60) == "ValueError: boom: the data was bad"
    assert not any(k == "log" and "Traceback" in p[1] for k, p in seen), "the owner's log has no traceback"


def test_a_failing_jobs_traceback_goes_to_the_server_log(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        _run(tmp_path, "fail")
    traces = [e for e in logs if e["event"] == "job_traceback"]
    assert len(traces) == 1 and traces[0]["job_id"] == "j1"
    assert "Traceback" in traces[0]["trace"] and "fake_targets.py" in traces[0]["trace"]


def test_default_limits_come_from_settings() -> None:
    from bastion.config import Settings

    config = JobConfig.from_settings(Settings(job_cpu_limit_seconds=7, job_open_files_limit=64))
    assert (config.cpu_limit_seconds, config.open_files_limit) == (7, 64)
    assert config.memory_limit_mb and config.output_limit_mb, "bounded by default"


def test_cpu_time_limit(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "burn", cpu_limit_seconds=1)
    assert outcome.returncode == -signal.SIGXCPU
    assert "SIGXCPU" in outcome.reason(60)


def test_open_files_limit(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "many_files", open_files_limit=32)
    assert outcome.error is not None and "Too many open files" in outcome.error["message"]


def test_output_size_limit(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "big_write", output_limit_mb=1)
    # Python ignores SIGXFSZ, so the write fails with EFBIG and the job reports it.
    assert outcome.error is not None and "File too large" in outcome.error["message"]
    assert (tmp_path / "big.bin").stat().st_size <= 1024 * 1024


def test_signal_death_is_named(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "die")
    assert outcome.returncode == -signal.SIGKILL
    assert outcome.reason(60) == "the job process was killed by SIGKILL (out of memory?)"


def test_timeout_kills_the_group(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "block", deadline=0.5)
    assert outcome.killed == "timeout" and outcome.returncode == -signal.SIGKILL
    assert "maximum runtime of 0.5 s" in outcome.reason(0.5)


def test_kill_before_start_never_starts(tmp_path: Path) -> None:
    proc = JobProcess({"job_id": "j", "attempt": 1}, {}, _config(tmp_path, "quick"))
    assert proc.kill("cancelled")
    assert proc.start() is None
    outcome = proc.run(lambda *_: None, deadline=time.monotonic() + 5)
    assert outcome.killed == "cancelled" and outcome.returncode is None
    assert not list(tmp_path.glob("*.started"))


def test_memory_limit(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "hog", memory_limit_mb=1024)
    assert outcome.error is not None and outcome.error["code"] == "out_of_memory"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_job_dies_with_its_worker(tmp_path: Path) -> None:
    """When the process holding the job's stdin dies, the job exits at once (no orphan trains on)."""
    script = (
        "import json, subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-m', 'bastion.jobs.child', '1'], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)\n"
        "p.stdin.write(json.dumps({'job_id': 'j', 'attempt': 1, 'target': "
        "'tests.jobs.fake_targets:block'}).encode() + b'\\n')\n"
        "p.stdin.flush()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {"PYTHONPATH": str(REPO), "BASTION_TEST_JOB_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    wait_for(lambda: list(tmp_path.glob("*.started")), 60, what="the job to start")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: pid_gone(child_pid), 10, what="the orphaned job to exit")
