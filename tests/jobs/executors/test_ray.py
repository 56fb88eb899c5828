"""What only the Ray executor has: its security checks, resources, waiting for them, keys staying home,
and recovery of a Bastion worker that died with tasks in flight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.context import Context
from bastion.errors import ConfigError, Invalid
from bastion.jobs.executors.ray import check_security, is_loopback
from tests.conftest import MASTER, Caller
from tests.jobs.executors.test_executors import events, use_ray
from tests.jobs.ray_cluster import RayCluster
from tests.jobs.support import ApiFactory, Harness, api_factory, principal, wait_for


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bastion.db'}"


def test_security_check_refuses_ray_without_token_auth() -> None:
    with pytest.raises(ConfigError, match="BASTION_RAY_ADDRESS"):
        check_security(None, insecure=False, env={"RAY_AUTH_MODE": "token"})
    with pytest.raises(ConfigError, match="CVE-2023-48022"):
        check_security("10.0.0.5:6379", insecure=False, env={})
    with pytest.raises(ConfigError, match="CVE-2023-48022"):
        check_security("127.0.0.1:6379", insecure=False, env={"RAY_AUTH_MODE": "disabled"})
    with pytest.raises(ConfigError, match="loopback"):
        check_security("10.0.0.5:6379", insecure=True, env={})
    assert check_security("127.0.0.1:6379", insecure=True, env={}) is False
    assert check_security("[::1]:6379", insecure=True, env={}) is False
    assert check_security("ray-head.hospital:6379", insecure=False, env={"RAY_AUTH_MODE": "token"}) is True
    assert is_loopback("localhost:1") and not is_loopback("127example.org:1")


def test_worker_refuses_to_start_without_token_auth(tmp_path: Path) -> None:
    """``bastion worker`` with BASTION_EXECUTOR=ray and no token auth exits before claiming anything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(
        BASTION_DATA_DIR=str(tmp_path / "data"),
        BASTION_MASTER_KEY=MASTER,
        BASTION_EXECUTOR="ray",
        BASTION_RAY_ADDRESS="10.0.0.5:6379",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "token" in (done.stdout + done.stderr)


@pytest.fixture
def ray_runs(ctx: Context, tmp_path: Path, ray_cluster: RayCluster) -> Iterator[Harness]:
    h = Harness(ctx, tmp_path)
    use_ray(h, ray_cluster)
    yield h
    h.close()


@pytest.mark.ray
def test_cancel_while_waiting_for_resources(ray_runs: Harness, alice: Caller) -> None:
    """A job asking for a GPU the cluster lacks waits (visible), and cancel still stops it."""
    svc = ray_runs.service(ray_runs.config("block"))
    ray_runs.worker(ray_runs.config("block"))
    me = principal(alice)
    job = ray_runs.submit(me, resources={"gpus": 1, "cpus": 1})
    waiting = wait_for(
        lambda: j if (j := ray_runs.job(job.id)).stage == "waiting_for_resources" else None,
        60,
        what="the job to wait for resources",
    )
    assert waiting.state == "running"
    assert json.loads(waiting.resources or "{}")["gpus"] == 1.0
    assert any(
        d.get("stage") == "waiting_for_resources" for k, d in events(ray_runs, job.id) if k == "progress"
    )
    cancelled, _ = svc.cancel(me, job.id)
    assert cancelled.state == "cancelled"
    wait_for(lambda: not ray_runs.workers[0].running(), 20, what="the worker to drop the waiting task")
    assert not ray_runs.marker(job.id, 1, "started").exists(), "the task never started"
    # The cluster is free again: a job that fits runs to completion.
    ray_runs.release(done := ray_runs.submit(me, resources={"cpus": 1}).id)
    assert ray_runs.wait_state(done, "completed").state == "completed"


@pytest.mark.ray
def test_no_key_or_vault_path_reaches_the_cluster(
    ray_runs: Harness, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_MASTER_KEY", MASTER)  # a leak through the environment would show
    config = ray_runs.config("tests.jobs.ray_targets:exposure")
    ray_runs.service(config)
    ray_runs.worker(config)
    job = ray_runs.wait_state(ray_runs.submit(principal(alice)).id, "completed", "failed")
    assert job.state == "completed", job.error_message
    seen = json.loads(job.results or "{}")
    vault_dir = str(ray_runs.ctx.settings.vault_dir.resolve())
    for what in ("environ", "spec", "inputs"):
        assert MASTER not in seen[what], f"the master key reached the task's {what}"
        assert vault_dir not in seen[what] and "vault_dir" not in seen[what], f"a vault path in {what}"
        assert "BASTION_DATABASE_URL" not in seen[what]
    assert "Dataset" in seen["inputs"], "the decrypted dataset arrived through the object store"
    assert seen["vault"] is True, "the task cannot open a vault"


@pytest.mark.ray
def test_real_training_model_is_sealed_by_the_worker(ray_runs: Harness, alice: Caller) -> None:
    from bastion.jobs.package import unpack
    from bastion.jobs.runner import artifact_id_for

    config = ray_runs.config("bastion.jobs.runner:run_training")
    ray_runs.service(config)
    ray_runs.worker(config)
    params = {"estimator": "logistic_regression", "importance_repeats": 0, "max_iter": 200}
    job = ray_runs.submit(principal(alice), dataset_source="breast_cancer", params=params)
    done = ray_runs.wait_state(job.id, "completed", "failed", timeout=120)
    assert done.state == "completed", done.error_message
    assert done.model_artifact_id == artifact_id_for(job.id, 1)
    package = unpack(ray_runs.ctx.vault.get_bytes(done.model_artifact_id, done.model_version))
    assert package.job_id == job.id and package.model_format == done.model_format
    assert json.loads(done.results or "{}")["accuracy"] > 0.9


@pytest.mark.ray
def test_search_trials_run_as_ray_tasks(ray_runs: Harness, alice: Caller) -> None:
    """A small search on Ray: trials in parallel as tasks, the best retrained and sealed by the worker."""
    config = ray_runs.config("bastion.jobs.runner:run_training")
    ray_runs.service(config)
    ray_runs.worker(config)
    search = {
        "space": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}},
        "trials": 4,
        "parallel": 2,
        "cv": 3,
    }
    params = {"estimator": "logistic_regression", "importance_repeats": 0}
    job = ray_runs.submit(
        principal(alice), dataset_source="breast_cancer", params=params, search=search, resources={"cpus": 1}
    )
    done = ray_runs.wait_state(job.id, "completed", "failed", timeout=300)
    assert done.state == "completed", done.error_message
    summary = json.loads(done.results or "{}")["search"]
    assert summary["n_complete"] + summary["n_pruned"] == 4
    assert all(len(t["folds"]) == 3 for t in summary["trials"] if t["state"] == "complete")
    assert done.model_artifact_id and done.model_format


@pytest.mark.ray
def test_data_parallel_job_matches_one_worker(ray_runs: Harness, alice: Caller) -> None:
    """A job with num_workers=2 trains through Ray Train inside its Ray task; its accuracy on the same
    held-out rows is that of one worker, within noise."""
    from bastion.data.builtin import load_dataset
    from bastion.ml.train import train

    params = {"epochs": 25, "hidden_layers": [16], "batch_size": 32, "importance_repeats": 0, "patience": 25}
    config = ray_runs.config("bastion.jobs.runner:run_training")
    ray_runs.service(config)
    ray_runs.worker(config)
    job = ray_runs.submit(
        principal(alice),
        model_type="adaptive_neural_net",
        dataset_source="breast_cancer",
        params={**params, "num_workers": 2},
        seed=1,
    )
    done = ray_runs.wait_state(job.id, "completed", "failed", timeout=300)
    assert done.state == "completed", done.error_message
    two = json.loads(done.results or "{}")
    one = train("adaptive_neural_net", load_dataset("breast_cancer"), params, seed=1).metrics
    assert two["test_samples"] == one["test_samples"] == 114
    assert abs(two["accuracy"] - one["accuracy"]) <= 4 / 114 + 1e-9, (two["accuracy"], one["accuracy"])
    assert two["accuracy"] > 0.9 and len(json.loads(done.history)) >= 1


@pytest.mark.ray
def test_data_parallel_epochs_stream_while_training(
    ray_runs: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker 0's epochs reach the progress callback while Ray Train is still fitting (not replayed
    when it returns), in order, once each."""
    import threading

    from ray.train.torch import TorchTrainer

    from bastion.data.builtin import load_dataset
    from bastion.ml.train import train

    ray_runs.worker(ray_runs.config("quick"))  # connects this process to the cluster, as a worker does
    fitted = threading.Event()
    fit = TorchTrainer.fit

    def fit_and_mark(self: TorchTrainer) -> object:
        result = fit(self)
        fitted.set()
        return result

    monkeypatch.setattr(TorchTrainer, "fit", fit_and_mark)
    seen: list[tuple[bool, dict[str, object]]] = []
    params = {"epochs": 4, "hidden_layers": [8], "batch_size": 64, "importance_repeats": 0, "num_workers": 2}
    result = train(
        "adaptive_neural_net",
        load_dataset("breast_cancer"),
        params,
        progress=lambda fraction, event: seen.append((fitted.is_set(), dict(event))),
        seed=1,
    )
    epochs = [(during_fit, e["epoch"]) for during_fit, e in seen if "epoch" in e]
    assert [n for _, n in epochs] == [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert epochs[0][0] is False, "the first epoch arrived only after training ended"


@pytest.fixture
def ray_api(ctx: Context, tmp_path: Path, ray_cluster: RayCluster) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path, lambda h: use_ray(h, ray_cluster))


@pytest.mark.ray
def test_dqn_jobs_run_on_ray(ray_api: ApiFactory, alice: Caller) -> None:
    """Online (the environment on the node) and offline (the worker decrypts the uploaded transitions
    and hands them over) DQN jobs train as Ray tasks; the worker seals the Q-network."""
    from bastion.jobs.package import unpack
    from tests.jobs.test_rl_jobs import TINY, _submit, _upload, _wait
    from tests.ml.rl.cartpole_logs import logged_cartpole

    client = ray_api("bastion.jobs.runner:run_training")
    r = _submit(client, alice, dataset_source="gymnasium", params=TINY)
    assert r.status_code == 200, r.text
    online = _wait(client, alice, r.json()["job_id"], "completed", "failed")
    assert online["status"] == "completed", online
    assert [e["step"] for e in online.get("history", []) if "step" in e] == [200, 400, 600]
    frame, _ = logged_cartpole(episodes=10, epsilon=0.5, seed=3)
    uploaded = _upload(client, alice, frame, "logs")
    assert uploaded.status_code == 201, uploaded.text
    params = {"offline_updates": 200, "report_every": 100, "net_arch": [16], "eval_episodes": 2}
    r = _submit(
        client, alice, dataset_source="user_provided", dataset_id=uploaded.json()["id"], params=params
    )
    assert r.status_code == 200, r.text
    offline = _wait(client, alice, r.json()["job_id"], "completed", "failed")
    assert offline["status"] == "completed", offline
    assert offline["results"]["mode"] == "offline" and offline["results"]["transitions"] == len(frame)
    harness = client.harness  # type: ignore[attr-defined]
    for job_id in (online["job_id"], offline["job_id"]):
        job = harness.job(job_id)
        package = unpack(harness.ctx.vault.get_bytes(job.model_artifact_id, job.model_version))
        assert package.job_id == job_id and package.model_format == "safetensors"
        lines = " ".join(ln["line"] for ln in harness.service().logs(job, limit=500)["lines"])
        assert "running on Ray node" in lines


def test_fine_tuning_is_refused_at_submit_on_a_ray_server(
    ctx: Context, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LoRA job cannot run on Ray (base model on the server's disk, per-epoch vault checkpoints):
    with BASTION_EXECUTOR=ray, creating one is a 422 that says so, before anything is queued."""
    from bastion.llm.params import Hyperparameters
    from bastion.llm.service import CreateRequest

    monkeypatch.setattr(ctx.settings, "executor", "ray")
    service = ctx.services.fine_tuning
    request = CreateRequest("any-base", "file-1", None, Hyperparameters())
    with pytest.raises(Invalid) as refused:
        service.create(principal(alice), request)
    assert refused.value.status_code == 422 and refused.value.code == "needs_local_executor"
    assert "local executor" in refused.value.message and "vault" in refused.value.message


def test_a_queued_fine_tuning_job_fails_on_a_ray_worker_with_the_reason() -> None:
    """One queued before the server switched to Ray: the worker fails it at once, saying why."""
    from bastion.jobs.config import JobConfig
    from bastion.jobs.executors.ray import RayExecutor, RayJobRun

    run = RayJobRun(
        RayExecutor("127.0.0.1:1", vault=None), {"job_id": "j", "model_type": "llm_lora"}, JobConfig()
    )
    assert run.start() == 0 and run.task is None
    outcome = run.run(lambda kind, payload: None, deadline=float("inf"))
    assert outcome.error is not None and outcome.error["code"] == "needs_local_executor"
    assert "local executor" in outcome.reason(1.0) and outcome.returncode == 1
