"""`bastion vault verify|rotate` over a real data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.vault.store import VaultStore
from tests.conftest import MASTER

runner = CliRunner()


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VaultStore:
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BASTION_MASTER_KEY", MASTER)
    monkeypatch.setenv("BASTION_JWT_SECRET", "j" * 40)
    store = VaultStore.open(tmp_path / "data" / "vault", MASTER)
    store.put_bytes("model-a", b"alpha" * 1000)
    store.put_bytes("dataset-b", b"beta" * 1000)
    return store


def test_verify_then_rotate_then_verify(vault: VaultStore) -> None:
    result = runner.invoke(app, ["vault", "verify", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in json.loads(result.output)} == {"ok"}
    rotated = runner.invoke(app, ["vault", "rotate", "--json"])
    assert rotated.exit_code == 0, rotated.output
    report = json.loads(rotated.output)
    assert report["rewrapped"] == 2 and report["active_version"] == 2
    after = json.loads(runner.invoke(app, ["vault", "verify", "--json"]).output)
    assert {r["kek_version"] for r in after} == {2}
    assert vault.get_bytes("model-a") == b"alpha" * 1000


def test_verify_names_a_corrupt_artifact(vault: VaultStore) -> None:
    data_file = next((vault.root / "artifacts" / "model-a").glob("v*.data"))
    raw = bytearray(data_file.read_bytes())
    raw[-40] ^= 0x01
    data_file.write_bytes(bytes(raw))
    result = runner.invoke(app, ["vault", "verify"])
    assert result.exit_code == 1
    assert "model-a" in result.output and "1 bad" in result.output


def test_wrong_master_key_is_a_clear_error(vault: VaultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_MASTER_KEY", "another-master-key-" + "z" * 40)
    result = runner.invoke(app, ["vault", "verify"])
    assert result.exit_code == 2
    assert "master" in result.output.lower()
