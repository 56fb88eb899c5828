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
from bastion.errors import ConfigError
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
    assert (waiting.resources or {})["gpus"] == 1.0
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
    seen = job.results or {}
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
    assert (done.results or {})["accuracy"] > 0.9


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
    summary = (done.results or {})["search"]
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
    two = done.results or {}
    one = train("adaptive_neural_net", load_dataset("breast_cancer"), params, seed=1).metrics
    assert two["test_samples"] == one["test_samples"] == 114
    assert abs(two["accuracy"] - one["accuracy"]) <= 4 / 114 + 1e-9, (two["accuracy"], one["accuracy"])
    assert two["accuracy"] > 0.9 and len(done.history) >= 1


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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.llm.support import build_model

    return build_model(tmp_path_factory.mktemp("llm"))


@pytest.mark.ray
def test_fine_tuning_runs_as_a_ray_task(
    ray_api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path
) -> None:
    """LoRA on Ray: the worker ships the base model's files and the scrubbed text through the object
    store; every epoch's checkpoint comes back on the stream and the worker writes it through the
    vault; the adapter comes back as package bytes and is sealed by the worker."""
    from bastion.jobs.package import unpack
    from tests.llm.support import FT, chat_records, jsonl, register, upload, wait_job

    client = ray_api("bastion.jobs.runner:run_training")
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(8))).json()["id"]
    hp = {"n_epochs": 2, "batch_size": 4, "learning_rate": 0.005}
    r = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": hp},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    done = wait_job(client, alice, r.json()["id"], "succeeded", "failed", timeout=300)
    assert done["status"] == "succeeded", done["error"]
    checkpoints = client.get(f"{FT}/jobs/{done['id']}/checkpoints", headers=alice.headers).json()["data"]
    assert len(checkpoints) == 2, checkpoints
    harness = client.harness  # type: ignore[attr-defined]
    job = harness.job(done["id"])
    vault = harness.ctx.vault
    for epoch in (1, 2):  # written by the worker, with its own metadata
        assert vault.get_bytes(f"ftckpt-{job.id}-e{epoch}") and vault.get_bytes(f"ftopt-{job.id}-e{epoch}")
    package = unpack(vault.get_bytes(job.model_artifact_id, job.model_version))
    assert package.job_id == job.id and package.model_format == "safetensors"
    assert package.model_config["kind"] == "lora_adapter"
    lines = " ".join(ln["line"] for ln in harness.service().logs(job, limit=500)["lines"])
    assert "running on Ray node" in lines


@pytest.mark.ray
def test_cancel_a_fine_tuning_task_on_ray(
    ray_api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path
) -> None:
    """Cancel works for a LoRA task as for any Ray job: the task's process ends, no more checkpoints."""
    import re

    from tests.jobs.support import pid_gone
    from tests.llm.support import FT, chat_records, jsonl, register, upload, wait_job

    client = ray_api("bastion.jobs.runner:run_training")
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(48))).json()["id"]
    hp = {"n_epochs": 50, "batch_size": 1, "learning_rate": 0.005}
    job = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": hp},
        headers=alice.headers,
    ).json()
    ckpts = f"{FT}/jobs/{job['id']}/checkpoints"
    wait_for(lambda: client.get(ckpts, headers=alice.headers).json()["data"], 240, 0.2, "a first checkpoint")
    harness = client.harness  # type: ignore[attr-defined]
    lines = " ".join(ln["line"] for ln in harness.service().logs(harness.job(job["id"]), limit=500)["lines"])
    found = re.search(r"running on Ray node \S+ \(pid (\d+)\)", lines)
    assert found, lines
    r = client.post(f"{FT}/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert wait_job(client, alice, job["id"], "cancelled")["finished_at"] is not None
    wait_for(lambda: pid_gone(int(found.group(1))), 60, what="the cancelled Ray task to end")


@pytest.mark.ray
def test_no_key_vault_or_model_path_reaches_a_fine_tuning_task(
    ray_api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exposure check for a LoRA job: its task sees the base model's files and the text, by name,
    never the master key, the vault, the database or the server's path of the base model."""
    from tests.llm.support import FT, chat_records, jsonl, register, upload

    monkeypatch.setenv("BASTION_MASTER_KEY", MASTER)
    client = ray_api("tests.jobs.ray_targets:exposure")
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(8))).json()["id"]
    r = client.post(f"{FT}/jobs", json={"model": "tiny", "training_file": file_id}, headers=alice.headers)
    assert r.status_code == 201, r.text
    harness = client.harness  # type: ignore[attr-defined]
    job = harness.wait_state(r.json()["id"], "completed", "failed", timeout=120)
    assert job.state == "completed", job.error_message
    seen = job.results or {}
    vault_dir = str(harness.ctx.settings.vault_dir.resolve())
    for what in ("environ", "spec", "inputs"):
        assert MASTER not in seen[what], f"the master key reached the task's {what}"
        assert vault_dir not in seen[what] and "vault_dir" not in seen[what], f"a vault path in {what}"
        assert str(tiny_model) not in seen[what], f"the server's base model path in {what}"
        assert "BASTION_DATABASE_URL" not in seen[what] and "sqlite:" not in seen[what]
    assert "config.json" in seen["inputs"] and "model.safetensors" in seen["inputs"], seen["inputs"]
    assert seen["vault"] is True, "the task cannot open a vault"


def test_a_fine_tuning_task_gets_no_server_path_and_writes_only_its_checkpoints() -> None:
    """The node gets the base model's files, not its path on the server; it may ask the worker to write
    this job's checkpoints and optimizer states, nothing else (not another job's, not a model)."""
    from bastion.jobs.config import JobConfig
    from bastion.jobs.executor import Outcome
    from bastion.jobs.executors.ray import RayExecutor, RayJobRun

    class Vault:
        def __init__(self) -> None:
            self.written: list[tuple[str, dict[str, object]]] = []

        def put_bytes(self, artifact_id: str, data: bytes, *, meta: dict[str, object]) -> None:
            self.written.append((artifact_id, meta))

    vault = Vault()
    spec = {
        "job_id": "0f0e0d0c-0b0a-4908-8706-050403020100",
        "model_type": "llm_lora",
        "params": {"base_model": {"name": "tiny", "sha256": "ab", "path": "/srv/models/tiny"}},
    }
    run = RayJobRun(RayExecutor("127.0.0.1:1", vault=vault), spec, JobConfig())
    remote = run.remote_spec()
    assert "/srv/models" not in json.dumps(remote) and remote["params"]["base_model"]["sha256"] == "ab"
    assert spec["params"]["base_model"]["path"] == "/srv/models/tiny", "the worker's own spec is untouched"
    outcome = Outcome()
    job = spec["job_id"]
    for artifact_id in (
        f"ftckpt-{job}-e1",
        f"ftopt-{job}-e1",
        "ftckpt-other-e1",
        f"job-{job}-a1",
        "dataset-1",
    ):
        run._handle(
            {"type": "vault_put", "artifact_id": artifact_id, "data": b"x"}, lambda k, p: None, outcome
        )
    assert vault.written == [
        (f"ftckpt-{job}-e1", {"kind": "ft-checkpoint", "job_id": job}),
        (f"ftopt-{job}-e1", {"kind": "ft-optimizer-state", "job_id": job}),
    ]
    assert outcome.protocol_errors == 3 and outcome.error is None


def test_a_resumed_fine_tuning_attempt_gets_its_newest_checkpoint_shipped(
    tiny_model: Path, tmp_path: Path
) -> None:
    """What the worker puts in the object store for a LoRA task: the base model's safetensors, config and
    tokenizer files (never a pickle file), the text, and, for a second attempt, the newest epoch's
    checkpoint and optimizer state (not older ones, not another job's)."""
    import shutil

    from bastion.jobs.executors.ray import job_inputs

    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    (base / "pytorch_model.bin").write_bytes(b"a pickle")
    job = "0f0e0d0c-0b0a-4908-8706-050403020100"
    stored = {
        "train-file": b"text",
        f"ftckpt-{job}-e1": b"c1",
        f"ftopt-{job}-e1": b"o1",
        f"ftckpt-{job}-e2": b"c2",
        f"ftopt-{job}-e2": b"o2",
        "ftckpt-11111111-2222-4333-8444-555555555555-e9": b"other",
    }

    class Vault:
        def list(self) -> list[str]:
            return list(stored)

        def get_bytes(self, artifact_id: str) -> bytes:
            return stored[artifact_id]

    spec = {
        "job_id": job,
        "model_type": "llm_lora",
        "params": {"base_model": {"path": str(base), "sha256": "x"}},
        "dataset": {"training_artifact": "train-file"},
    }
    inputs = job_inputs(spec, Vault())
    assert inputs["artifacts"] == {"train-file": b"text", f"ftckpt-{job}-e2": b"c2", f"ftopt-{job}-e2": b"o2"}
    assert "config.json" in inputs["base_files"] and "pytorch_model.bin" not in inputs["base_files"]
    assert all("/" not in name for name in inputs["base_files"])
