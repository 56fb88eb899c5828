"""Each trained model and each global model is stored once in the vault: the registry version refers
to the job's package (or the federation's global-model version) instead of a copy. Downloads give
what they gave when the bytes were copied; dropping one reference never breaks the other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from bastion.api.app import create_app
from bastion.auth.principal import Principal
from bastion.catalog.model_versions import ModelVersions
from bastion.catalog.quota import used_bytes
from bastion.catalog.stored import PACKAGE, RAW, StoredRef, held, read_model, release
from bastion.cli.main import app
from bastion.client import open_download
from bastion.context import Context
from bastion.federation.global_model import GlobalModel
from bastion.federation.server.artifacts import global_artifact
from bastion.jobs.package import ModelPackage, pack, unpack
from bastion.store import Database
from bastion.store.tables import ModelRecord, ModelVersionRecord, TrainingJob
from bastion.vault.rotate import rotate
from bastion.vault.store import VaultStore
from tests.api.test_training_routes import submit, wait_status
from tests.backup.test_backup_restore import _env
from tests.conftest import MASTER, Caller
from tests.federation.server.support import World
from tests.jobs.support import ApiFactory, api_factory

M = "/api/v1/models"


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def vault_files(ctx: Context) -> dict[str, int]:
    """Every file of a model-holding artifact (a job's, a version's, a global model's) -> its bytes."""
    root = ctx.vault.root / "artifacts"
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0].startswith(("job-", "model-", "flg-"))
    }


def artifact_dirs(ctx: Context) -> set[str]:
    return {path.split("/")[0] for path in vault_files(ctx)}


def rows_of(ctx: Context, name: str) -> list[ModelVersionRecord]:
    with ctx.db.session() as s:
        model = s.scalar(select(ModelRecord).where(ModelRecord.name == name))
        assert model is not None
        found = s.scalars(
            select(ModelVersionRecord)
            .where(ModelVersionRecord.model_id == model.id)
            .order_by(ModelVersionRecord.version)
        )
        return list(found)


def trained_job(api: ApiFactory, alice: Caller) -> tuple[TestClient, str, str]:
    """A completed job (fake training, real package, real registration); client, job id, model name."""
    client = api("packaged")
    job_id = submit(client, alice)
    wait_status(client, alice, job_id, "completed")
    name = "alzheimer_classifier-synthetic_test_data"
    # registered in the transaction that completed the job: there at once, no waiting
    r = client.get(f"{M}/{name}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["versions"] == 1, r.text
    return client, job_id, name


def downloads(client: TestClient, alice: Caller, job_id: str, name: str) -> tuple[Any, Any]:
    job = client.get(f"/api/v1/training/model/{job_id}", headers=alice.headers)
    version = client.get(f"{M}/{name}/download", headers=alice.headers)
    assert job.status_code == 200 and version.status_code == 200, (job.text, version.text)
    return open_download(job.json(), api_key=alice.key), open_download(version.json(), api_key=alice.key)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_jobs_model_and_its_version_share_one_vault_object(
    api: ApiFactory, ctx: Context, alice: Caller
) -> None:
    client, job_id, name = trained_job(api, alice)
    with ctx.db.session() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None and job.model_artifact_id and job.model_version
        artifact, at = job.model_artifact_id, job.model_version
    [row] = rows_of(ctx, name)
    assert (row.artifact_id, row.artifact_version, row.artifact_layout) == (artifact, at, PACKAGE)
    # one artifact in the vault: the job's package (no model-<id>-v1 copy beside it)
    assert artifact_dirs(ctx) == {artifact}
    assert set(vault_files(ctx)) == {f"{artifact}/v{at}.data", f"{artifact}/v{at}.key"}

    from_job, from_registry = downloads(client, alice, job_id, name)
    stored = unpack(ctx.vault.get_bytes(artifact, at))
    assert from_job.job_id == job_id and from_job.model_bytes == stored.model_bytes
    # the registry download is the package it always was: bound to the version's id, same model bytes
    expected = pack(
        ModelPackage(row.id, "alzheimer_classifier", "skops", stored.model_config, stored.model_bytes)
    )
    repacked = pack(
        ModelPackage(
            from_registry.job_id,
            from_registry.model_type,
            from_registry.model_format,
            from_registry.model_config,
            from_registry.model_bytes,
        )
    )
    assert repacked == expected
    # the quota counts the model once (the version's size: the model bytes, as before)
    with ctx.db.session() as s:
        assert used_bytes(s, alice.user_id)["models"] == len(stored.model_bytes) == row.size_bytes


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dropping_either_reference_keeps_the_other_and_the_last_one_frees_the_bytes(
    api: ApiFactory, ctx: Context, alice: Caller
) -> None:
    client, job_id, name = trained_job(api, alice)
    [row] = rows_of(ctx, name)
    artifact, at = row.artifact_id, row.artifact_version
    assert at is not None
    before = vault_files(ctx)

    # the version goes: the job still holds the package, its download is unchanged
    with ctx.db.session() as s:
        s.delete(s.get(ModelVersionRecord, row.id))
    with ctx.db.session() as s:
        assert release(s, ctx.vault, artifact, [at]) == {at}
    assert vault_files(ctx) == before
    r = client.get(f"/api/v1/training/model/{job_id}", headers=alice.headers)
    assert r.status_code == 200 and open_download(r.json(), api_key=alice.key).job_id == job_id

    # a second version refers to the same package; now the job lets go of its model
    registry: ModelVersions = ctx.services.models
    package = unpack(ctx.vault.get_bytes(artifact, at))
    registry.register(
        alice.user_id,
        name,
        package.model_bytes,
        "skops",
        config=package.model_config,
        metrics={},
        lineage={"job_id": job_id},
        stored=StoredRef(artifact, at, PACKAGE),
    )
    with ctx.db.session() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None
        job.model_artifact_id, job.model_version = None, None
    with ctx.db.session() as s:
        assert held(s, artifact) == (False, {at})
        assert release(s, ctx.vault, artifact, [at]) == {at}
    r = client.get(f"{M}/{name}/download", headers=alice.headers)
    assert r.status_code == 200
    assert open_download(r.json(), api_key=alice.key).model_bytes == package.model_bytes

    # the last reference goes: so do the bytes
    with ctx.db.session() as s:
        for version in s.scalars(
            select(ModelVersionRecord).where(ModelVersionRecord.artifact_id == artifact)
        ):
            s.delete(version)
    with ctx.db.session() as s:
        assert release(s, ctx.vault, artifact, [at]) == set()
    assert artifact not in artifact_dirs(ctx)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_access_code_gives_the_version_its_own_copy_and_the_job_keeps_reading(
    api: ApiFactory, ctx: Context, alice: Caller
) -> None:
    client, job_id, name = trained_job(api, alice)
    [shared] = rows_of(ctx, name)
    r = client.put(f"{M}/{name}/access-code", json={"access_code": "correct horse 42"}, headers=alice.headers)
    assert r.status_code == 200, r.text
    [own] = rows_of(ctx, name)
    assert own.artifact_version is None and own.artifact_layout == RAW
    assert artifact_dirs(ctx) == {shared.artifact_id, own.artifact_id}
    assert ctx.vault.info(own.artifact_id).access_code_required
    assert not ctx.vault.info(shared.artifact_id).access_code_required
    r = client.get(f"/api/v1/training/model/{job_id}", headers=alice.headers)
    assert r.status_code == 200  # the job's package needs no code, as before
    assert client.get(f"{M}/{name}/download", headers=alice.headers).status_code == 403
    r = client.get(f"{M}/{name}/download", headers={**alice.headers, "X-Access-Code": "correct horse 42"})
    assert r.status_code == 200, r.text
    assert (
        open_download(r.json(), api_key=alice.key).model_bytes
        == unpack(ctx.vault.get_bytes(shared.artifact_id, shared.artifact_version)).model_bytes
    )


CANCER_MLP = {"type": "tabular_mlp", "in_features": 30, "num_classes": 2, "hidden": [8]}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_federations_global_models_are_stored_once_and_survive_archiving(
    ctx: Context, alice: Caller
) -> None:
    world = World(ctx, Principal(alice.user_id, alice.username, alice.role, "api_key"))
    fid = world.create(
        model=CANCER_MLP, min_clients=2, rounds=2, evaluation={"server_dataset": "builtin:breast_cancer"}
    )["id"]
    sites = [world.enroll(fid, n) for n in ("a", "b")]
    for site in sites:
        world.submit(site, world.seal(site, fid, 1, num_samples=50))
    flg = global_artifact(fid)
    rows = rows_of(ctx, "fl-fed")
    assert [(r.artifact_id, r.artifact_version, r.artifact_layout) for r in rows] == [
        (flg, 1, RAW),
        (flg, 2, RAW),
    ]
    # global models live only in flg-<id>: no model-<id>-vN copy
    assert not any(d.startswith("model-") for d in artifact_dirs(ctx))
    assert ctx.vault.versions(flg) == [1, 2]

    with TestClient(create_app(context=ctx)) as client:
        r = client.get(f"/api/v1/federations/{fid}/model", headers=alice.headers)
        assert r.status_code == 200
        assert r.content == ctx.vault.get_bytes(flg, 2)
        # the site's signed model carries the same weights
        number, signed = world.sites_svc.signed_model(sites[0].identity)
        assert number == 2 and GlobalModel.from_bytes(signed).weights == ctx.vault.get_bytes(flg, 2)
        r = client.get(f"{M}/fl-fed/download", params={"version": 2}, headers=alice.headers)
        assert r.status_code == 200
        assert open_download(r.json(), api_key=alice.key).model_bytes == ctx.vault.get_bytes(flg, 2)

        # version 1 gets its own (protected) copy; archiving then drops what only the federation held
        r = client.put(
            f"{M}/fl-fed/access-code",
            json={"version": 1, "access_code": "correct horse 42"},
            headers=alice.headers,
        )
        assert r.status_code == 200, r.text
        assert ctx.vault.versions(flg) == [1, 2]  # the live federation still holds version 1
        assert client.delete(f"/api/v1/federations/{fid}", headers=alice.headers).status_code == 200
        assert ctx.vault.versions(flg) == [2]
        # the archived federation's model is gone for its own route (as before); the version reads on
        assert client.get(f"/api/v1/federations/{fid}/model", headers=alice.headers).status_code == 404
        r = client.get(f"{M}/fl-fed/download", params={"version": 2}, headers=alice.headers)
        assert r.status_code == 200
        r = client.get(
            f"{M}/fl-fed/download",
            params={"version": 1},
            headers={**alice.headers, "X-Access-Code": "correct horse 42"},
        )
        assert r.status_code == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_shared_bytes_survive_key_rotation_and_a_backup_round_trip(
    api: ApiFactory, ctx: Context, alice: Caller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, job_id, name = trained_job(api, alice)
    [row] = rows_of(ctx, name)
    data_before = {
        p: (ctx.vault.root / "artifacts" / p).read_bytes() for p in vault_files(ctx) if "data" in p
    }
    report = rotate(ctx.vault)
    assert report.completed
    # one key slot rewrapped for both references; the sealed model itself untouched
    assert {p: (ctx.vault.root / "artifacts" / p).read_bytes() for p in data_before} == data_before
    from_job, from_registry = downloads(client, alice, job_id, name)
    assert from_job.model_bytes == from_registry.model_bytes

    _env(monkeypatch, ctx.settings.data_dir, ctx.settings.resolved_database_url)
    out = tmp_path / "bastion.bak"
    runner = CliRunner()
    assert runner.invoke(app, ["backup", "-o", str(out), "--json"]).exit_code == 0
    fresh = tmp_path / "fresh"
    _env(monkeypatch, fresh, f"sqlite:///{fresh}/bastion.db")
    restored = runner.invoke(app, ["restore", str(out), "--json"])
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.output)["problems"] == []
    store = VaultStore.open(fresh / "vault", MASTER)
    db = Database(f"sqlite:///{fresh}/bastion.db")
    with db.session() as s:
        again = s.get(ModelVersionRecord, row.id)
        assert again is not None and again.artifact_version == row.artifact_version
        model = read_model(store, again.artifact_id, again.artifact_version, again.artifact_layout)
    db.dispose()
    assert model == from_registry.model_bytes
