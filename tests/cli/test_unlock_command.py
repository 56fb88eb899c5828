"""`bastion users unlock`: lifts an account's lockout (from every address) or an address's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.cli.server import open_context
from bastion.errors import Locked, Unauthorized
from tests.conftest import JWT, MASTER


def test_users_unlock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_MASTER_KEY": MASTER,
        "BASTION_JWT_SECRET": JWT,
        "BASTION_MAX_FAILED_ATTEMPTS": "2",
    }.items():
        monkeypatch.setenv(k, v)
    ctx = open_context()
    try:
        ctx.accounts.create_user("olga", "user", password="the right password")
        for _ in range(2):
            with pytest.raises(Unauthorized):
                ctx.auth.login("olga", "wrong password!", "192.0.2.9")
        with pytest.raises(Locked):
            ctx.auth.login("olga", "the right password", "192.0.2.9")
        result = CliRunner().invoke(app, ["users", "unlock", "olga", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["cleared"] == 2
        assert ctx.auth.login("olga", "the right password", "192.0.2.9").access_token
        assert CliRunner().invoke(app, ["users", "unlock"]).exit_code == 2
    finally:
        ctx.close()
