"""`bastion backup` / `bastion restore`: database plus vault in one encrypted file, restored into an
empty place and verified (entries, artifacts, audit chain, references); tampering and wrong
passphrases are refused. And `bastion vault rekey`: old master key to new, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.context import Context
from bastion.errors import ConfigError
from bastion.store import Database
from bastion.vault.records import Records
from bastion.vault.store import VaultStore
from tests.catalog.test_datasets import patient_csv, upload
from tests.conftest import JWT, MASTER, Caller

runner = CliRunner()
PASS = "correct horse battery staple"
NEW_MASTER = "the-new-master-key-" + "n" * 40


def _env(monkeypatch: pytest.MonkeyPatch, data: Path, db_url: str, master: str = MASTER) -> None:
    monkeypatch.setenv("BASTION_DATA_DIR", str(data))
    monkeypatch.setenv("BASTION_DATABASE_URL", db_url)
    monkeypatch.setenv("BASTION_MASTER_KEY", master)
    monkeypatch.setenv("BASTION_JWT_SECRET", JWT)
    monkeypatch.setenv("BASTION_BACKUP_PASSPHRASE", PASS)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_backup_then_restore_into_an_empty_place_is_verified(
    client: TestClient, ctx: Context, alice: Caller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = upload(client, alice, patient_csv()).json()
    r = client.put(
        f"/api/v1/datasets/{ds['id']}/access-code", json={"access_code": "a code 1234"}, headers=alice.headers
    )
    assert r.status_code == 200
    Records(ctx.vault).put("flu-fed1", "update1", b"a received update")  # records travel too
    _env(monkeypatch, ctx.settings.data_dir, ctx.settings.resolved_database_url)
    out = tmp_path / "bastion.bak"
    made = runner.invoke(app, ["backup", "-o", str(out), "--json"])
    assert made.exit_code == 0, made.output
    manifest = json.loads(made.output)
    assert manifest["tables"]["datasets"] == 1 and manifest["vault_files"] >= 3
    raw = out.read_bytes()
    assert raw.startswith(b"BSTBAK1\n") and b"alice" not in raw and b"keyring" not in raw
    assert out.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(app, ["backup", "-o", str(out)])
    assert again.exit_code == 2 and "never overwritten" in again.output

    # restore into a fresh data directory and database
    fresh = tmp_path / "fresh"
    _env(monkeypatch, fresh, f"sqlite:///{fresh}/bastion.db")
    restored = runner.invoke(app, ["restore", str(out), "--json"])
    assert restored.exit_code == 0, restored.output
    report = json.loads(restored.output)
    assert report["success"] and report["problems"] == [] and report["tables"]["datasets"] == 1
    assert report["artifacts_checked"] >= 1
    store = VaultStore.open(fresh / "vault", MASTER)
    original = VaultStore.open(ctx.settings.vault_dir, MASTER)
    artifact = f"dataset-{ds['id']}"
    assert store.get_bytes(artifact, access_code="a code 1234") == original.get_bytes(
        artifact, access_code="a code 1234"
    )
    assert Records(store).get_bytes("flu-fed1", "update1") == b"a received update"
    db = Database(f"sqlite:///{fresh}/bastion.db")
    from bastion.audit.verify import verify_chain

    assert verify_chain(db).ok
    db.dispose()
    # a second restore over it is refused (not empty)
    twice = runner.invoke(app, ["restore", str(out)])
    assert twice.exit_code == 2 and "not empty" in twice.output


def test_tampered_or_wrong_passphrase_backups_are_refused(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.backup import backup, restore

    ctx.vault.put_bytes("model-x", b"weights" * 5000)
    out = tmp_path / "b.bak"
    backup(ctx.db, ctx.vault, out, PASS)
    with pytest.raises(Exception, match="passphrase"):
        restore(
            _fresh_db(tmp_path / "a"), tmp_path / "a" / "vault", MASTER.encode(), out, "a wrong passphrase!"
        )
    raw = bytearray(out.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad = tmp_path / "bad.bak"
    bad.write_bytes(bytes(raw))
    from bastion.errors import IntegrityError, Invalid

    with pytest.raises((IntegrityError, Invalid), match=r"altered|SHA-256|truncated|authentic"):
        restore(_fresh_db(tmp_path / "b"), tmp_path / "b" / "vault", MASTER.encode(), bad, PASS)
    with pytest.raises(ConfigError, match="master key"):
        restore(_fresh_db(tmp_path / "c"), tmp_path / "c" / "vault", NEW_MASTER.encode(), out, PASS)
    with pytest.raises(Exception, match="at least"):
        backup(ctx.db, ctx.vault, tmp_path / "short.bak", "short")


def _fresh_db(where: Path) -> Database:
    where.mkdir(parents=True, exist_ok=True)
    return Database(f"sqlite:///{where}/bastion.db")


def test_rekey_moves_the_vault_to_the_new_master_key_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.vault import rekey as rekey_module

    data = tmp_path / "data"
    store = VaultStore.open(data / "vault", MASTER)
    for i in range(3):
        store.put_bytes(f"m{i}", f"payload {i}".encode() * 100, access_code="code 1234" if i == 2 else None)
    _env(monkeypatch, data, f"sqlite:///{data}/bastion.db")
    monkeypatch.setenv("BASTION_NEW_MASTER_KEY", NEW_MASTER)

    # interrupted after the first rewrap: the vault still opens (with both keys) and a rerun finishes
    calls: list[Any] = []
    real_rotate = rekey_module.rotate

    def crash_after_one(store: VaultStore, **_: Any) -> Any:
        def on_rewrap(artifact: str, version: int) -> None:
            calls.append(artifact)
            raise KeyboardInterrupt

        return real_rotate(store, on_rewrap=on_rewrap)

    monkeypatch.setattr(rekey_module, "rotate", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        rekey_module.rekey(data / "vault", MASTER.encode(), NEW_MASTER.encode())
    monkeypatch.setattr(rekey_module, "rotate", real_rotate)
    assert len(calls) == 1
    with pytest.raises(ConfigError):
        VaultStore.open(data / "vault", NEW_MASTER)  # not finished: the new key alone is not enough

    result = runner.invoke(app, ["vault", "rekey", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["failures"] == [] and report["rewrapped"] == 2 and report["retired_versions"]
    moved = VaultStore.open(data / "vault", NEW_MASTER)
    assert moved.get_bytes("m0") == b"payload 0" * 100
    assert moved.get_bytes("m2", access_code="code 1234") == b"payload 2" * 100
    with pytest.raises(ConfigError):
        VaultStore.open(data / "vault", MASTER)
    monkeypatch.setenv("BASTION_MASTER_KEY", NEW_MASTER)
    assert runner.invoke(app, ["vault", "verify", "--json"]).exit_code == 0
