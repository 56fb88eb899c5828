"""A job process holds its own keys only: its inputs' data keys, and commits of its outputs.

The hostile job (``fake_targets.snoop``) runs in a real job process on Alice's upload and tries to
read and overwrite Bob's; the real trainer shows an ordinary job still reads its data and stores
its model through the worker.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from bastion.context import Context
from bastion.jobs.keys import KeyScope, inputs_of, outputs_of
from tests.conftest import MASTER, Caller
from tests.jobs.support import QUICK_PARAMS, Harness, principal
from tests.jobs.test_datasets import CSV


def _upload(ctx: Context, who: Caller, name: str) -> tuple[str, str]:
    view = ctx.services.datasets.upload(principal(who), CSV, name=name, policy=None)
    from bastion.store.tables import DatasetRecord

    with ctx.db.session() as s:
        row = s.get(DatasetRecord, view["id"])
        assert row is not None
        return view["id"], str(row.artifact_id)


def test_a_job_cannot_read_or_write_another_users_dataset(
    ctx: Context, harness: Harness, alice: Caller, bob: Caller
) -> None:
    own_id, own_artifact = _upload(ctx, alice, "alice's")
    _, victim_artifact = _upload(ctx, bob, "bob's")
    version, victim_key, _, victim_path = ctx.vault.data_key(victim_artifact)
    (harness.dir / "victim.json").write_text(
        json.dumps({"artifact": victim_artifact, "version": version, "path": str(victim_path)})
    )
    harness.service(harness.config("snoop"))
    harness.worker(harness.config("snoop"))
    job = harness.submit(
        principal(alice),
        dataset_source="user_provided",
        dataset_id=own_id,
        target="label",
        params=QUICK_PARAMS,
    )
    done = harness.wait_state(job.id, "completed", "failed")
    assert done.state == "completed", done.error_message
    report = json.loads(harness.marker(job.id, 1, "snoop").read_text())
    tried = report["tried"]
    assert tried["own_bytes"] > 0 and tried["listed"] == [own_artifact]
    assert tried["granted_read"] == "not_found"
    assert tried["granted_write"] == "artifact_not_granted"
    assert tried["raw_file_with_own_keys"] == ["IntegrityError"]
    # Everything the job process was given: no master key, and exactly one data key, its input's.
    received = json.dumps(report["received"])
    assert MASTER not in received and base64.b64encode(MASTER.encode()).decode() not in received
    assert "master_key" not in received and "vault_dir" not in received
    reads = report["received"]["secrets"]["vault"]["reads"]
    assert [r["artifact"] for r in reads] == [own_artifact]
    assert base64.b64decode(reads[0]["key"]) == ctx.vault.data_key(own_artifact)[1] != victim_key
    assert report["received"]["secrets"]["vault"]["writes"] == [f"job-{job.id}-a1"]
    # Bob's dataset is untouched.
    assert ctx.vault.versions(victim_artifact) == [version]


def test_a_real_job_trains_on_its_upload_and_the_worker_commits_its_model(
    ctx: Context, harness: Harness, alice: Caller
) -> None:
    dataset_id, _ = _upload(ctx, alice, "tiny")
    config = harness.config("bastion.jobs.runner:run_training")
    harness.service(config)
    harness.worker(config)
    job = harness.submit(
        principal(alice),
        dataset_source="user_provided",
        dataset_id=dataset_id,
        target="label",
        params=QUICK_PARAMS,
    )
    done = harness.wait_state(job.id, "completed", "failed", timeout=180)
    assert done.state == "completed", done.error_message
    artifact = f"job-{job.id}-a1"
    info = ctx.vault.info(artifact)
    assert info.meta["kind"] == "job-model" and ctx.vault.get_bytes(artifact)
    # No reservation was left behind by the job (the registry's own copy may still be being written).
    assert [(a, c, i) for a, c, i in ctx.vault.scan() if a == artifact] == [(artifact, [1], [])]


def test_scope_refuses_what_the_job_does_not_own(ctx: Context, tmp_path: Path) -> None:
    vault = ctx.vault
    vault.put_bytes("someone-else", b"secret rows")
    spec = {"job_id": "j1", "attempt": 2, "model_type": "m", "dataset": {"artifact_id": "mine"}}
    vault.put_bytes("mine", b"my rows")
    scope = KeyScope.for_job(vault, spec)
    assert scope.reads == ["mine"] and scope.writes == {"job-j1-a2"}
    grant = scope.child_grant()
    assert [g["artifact"] for g in grant["reads"]] == ["mine"]
    for message in (
        {"op": "reserve", "artifact": "someone-else"},
        {"op": "commit", "artifact": "job-j1-a2", "version": 1},  # never reserved
        {"op": "delete", "artifact": "job-j1-a2"},
    ):
        try:
            scope.handle(message)
            raise AssertionError(f"{message} was allowed")
        except Exception as exc:
            assert getattr(exc, "code", "") in ("artifact_not_granted", "not_reserved", "bad_call"), exc
    # A reservation never committed is dropped when the job ends.
    reply = scope.handle({"op": "reserve", "artifact": "job-j1-a2"})
    assert Path(reply["path"]).exists()
    scope.close()
    assert not Path(reply["path"]).exists()
    assert all(not incomplete for _, _, incomplete in vault.scan())


def test_each_job_kind_names_its_inputs_and_outputs() -> None:
    lora = {
        "job_id": "j",
        "attempt": 1,
        "model_type": "llm_lora",
        "params": {"n_epochs": 2},
        "dataset": {"training_artifact": "ft-train", "validation_artifact": None},
    }
    assert inputs_of(lora) == ["ft-train", "ftckpt-j-e1", "ftopt-j-e1", "ftckpt-j-e2", "ftopt-j-e2"]
    assert outputs_of(lora) == ["job-j-a1", "ftckpt-j-e1", "ftopt-j-e1", "ftckpt-j-e2", "ftopt-j-e2"]
    from bastion.llm.train import checkpoint_id, optimizer_state_id

    assert {checkpoint_id("j", 1), optimizer_state_id("j", 2)} <= set(outputs_of(lora))
    builtin = {"job_id": "j", "attempt": 1, "model_type": "dqn", "dataset": {"source": "gymnasium"}}
    assert inputs_of(builtin) == [] and outputs_of(builtin) == ["job-j-a1"]
