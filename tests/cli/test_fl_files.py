"""`bastion fl model-download` writes the model 0600, whatever the umask."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client.federations import Federations


def test_model_download_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Federations, "download_model", lambda self, fid: (3, b"safetensors bytes"))
    old = os.umask(0o022)
    try:
        out = tmp_path / "model.safetensors"
        out.write_bytes(b"older, world-readable")
        out.chmod(0o644)
        env = {"BASTION_URL": "http://127.0.0.1:9", "BASTION_API_KEY": "bst_x"}
        result = CliRunner().invoke(app, ["fl", "model-download", "fid", str(out), "--json"], env=env)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["global_version"] == 3
    assert out.read_bytes() == b"safetensors bytes" and out.stat().st_mode & 0o777 == 0o600


def test_delete_and_status_commands_call_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        Federations,
        "archive",
        lambda self, fid: calls.append(("archive", fid)) or {"id": fid, "state": "archived"},
    )
    monkeypatch.setattr(
        Federations,
        "status",
        lambda self, fid: calls.append(("status", fid)) or {"id": fid, "state": "running"},
    )
    env = {"BASTION_URL": "http://127.0.0.1:9", "BASTION_API_KEY": "bst_x"}
    for command, state in (("delete", "archived"), ("status", "running")):
        result = CliRunner().invoke(app, ["fl", command, "f1", "--json"], env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["state"] == state
    assert calls == [("archive", "f1"), ("status", "f1")]
