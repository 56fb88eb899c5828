"""Server-side CLI: users, keys and `audit verify`, through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.store import Database
from bastion.store.tables import AuditEvent
from tests.conftest import JWT, MASTER

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for k, v in {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_DATABASE_URL": db_url,
        "BASTION_MASTER_KEY": MASTER,
        "BASTION_JWT_SECRET": JWT,
    }.items():
        monkeypatch.setenv(k, v)
    return db_url


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_users_and_keys_lifecycle(env: str) -> None:
    code, out = run("users", "create", "nina", "--role", "viewer", "--with-key", "--json")
    assert code == 0, out
    created = json.loads(out)
    assert created["role"] == "viewer" and created["api_key"].startswith("bst_")
    code, out = run("users", "list", "--json")
    assert [u["username"] for u in json.loads(out)] == ["nina"]
    code, out = run("keys", "create", "nina", "--name", "ci", "--json")
    key_id = json.loads(out)["id"]
    code, out = run("keys", "list", "nina", "--json")
    listed = json.loads(out)
    assert len(listed) == 2 and all("api_key" not in k for k in listed)
    assert run("keys", "revoke", key_id, "--json")[0] == 0
    assert run("users", "disable", "nina", "--json")[0] == 0
    code, out = run("users", "create", "nina")
    assert code == 1 and "already exists" in out


def test_audit_verify_fails_and_names_the_edited_row(env: str) -> None:
    run("users", "create", "a1")
    run("users", "create", "a2")
    run("users", "create", "a3")
    code, out = run("audit", "verify", "--json")
    assert code == 0 and json.loads(out)["checked"] == 3
    db = Database(env)
    with db.session() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="someone-else"))
    db.dispose()
    code, out = run("audit", "verify")
    assert code == 1
    assert "row 2" in out
