"""Fine-tuning jobs under faults and with DP: a worker dies mid-epoch; epsilon is the accountant's."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from bastion.context import Context
from bastion.ml.dp_sgd import epsilon
from bastion.store.tables import JobWorker
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory, wait_for
from tests.llm.support import FT, chat_records, jsonl, register, upload, wait_job

RUNNER = "bastion.jobs.runner:run_training"
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def test_worker_killed_mid_epoch_resumes_from_last_checkpoint(
    api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path
) -> None:
    client = api(RUNNER)
    harness = client.harness  # type: ignore[attr-defined]
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(48))).json()["id"]
    hp = {"n_epochs": 4, "batch_size": 1, "learning_rate": 0.005}
    job = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": hp},
        headers=alice.headers,
    ).json()
    ckpts = f"{FT}/jobs/{job['id']}/checkpoints"
    wait_for(lambda: client.get(ckpts, headers=alice.headers).json()["data"], 180, 0.1, "a first checkpoint")
    # The worker dies: its loop stops, its job process is killed mid-epoch, the job row stays running.
    first = harness.workers[0]
    first._stopping.set()
    first._wake.set()
    first._thread.join(10)
    runs = first._snapshot()
    first.kill(job["id"], "lost")
    for run in runs:
        run.thread.join(10)
    assert client.get(f"{FT}/jobs/{job['id']}", headers=alice.headers).json()["status"] == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with harness.ctx.db.session() as s:
        s.execute(update(JobWorker).where(JobWorker.id == first.id).values(pid=dead.pid))
    harness.worker(harness.config(RUNNER))  # a new worker finds the orphan at start-up
    done = wait_job(client, alice, job["id"], "succeeded", "failed", timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 2
    assert done["metrics"]["resumed_from_epoch"] >= 1
    # The optimizer and LR schedule came back from the vault at the checkpoint's step (not step 0).
    step = done["metrics"]["resumed_schedule_step"]
    assert step > 0 and step % done["metrics"]["resumed_from_epoch"] == 0
    epochs = [c["epoch"] for c in client.get(ckpts, headers=alice.headers).json()["data"]]
    assert epochs == [1, 2, 3, 4]


def test_dp_fine_tuning_reports_the_accountants_epsilon(
    api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path
) -> None:
    client = api(RUNNER)
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(40))).json()["id"]
    hp = {
        "n_epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.01,
        "validation_fraction": 0.2,
        "dp": {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-4},
    }
    job = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": hp},
        headers=alice.headers,
    ).json()
    done = wait_job(client, alice, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done["error"]
    dp = done["metrics"]["dp"]
    n_train = 32  # 40 examples, 20% held out
    q, steps = 8 / n_train, 2 * (n_train // 8)
    assert (dp["sampling_rate"], dp["steps"], dp["noise_multiplier"]) == (q, steps, 1.0)
    assert done["metrics"]["epsilon"] == pytest.approx(epsilon(1.0, q, steps, 1e-4), rel=1e-12)
    assert client.get(f"{FT}/jobs/{job['id']}/checkpoints", headers=alice.headers).json()["data"][-1][
        "metrics"
    ]["epsilon"] == pytest.approx(dp["epsilon"])
