"""`bastion users signups|approve|reject` (server side) and `bastion signup` through the SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion.api.app import create_app
from bastion.cli.main import app
from bastion.cli.server import open_context
from bastion.client import BastionClient
from bastion.client import sdk as sdk_module
from tests.cli.test_server_commands import env  # noqa: F401  (the server-side CLI's environment)

runner = CliRunner()
PASSWORD = "correct horse battery staple"


def cli_json(stdout: str) -> dict[str, Any]:
    """The command's JSON document, skipping the in-process server's request log lines around it."""
    start = min(i for i in (stdout.find("{\n"), stdout.find('{"')) if i >= 0)
    body: dict[str, Any] = json.JSONDecoder().raw_decode(stdout[start:])[0]
    return body


@pytest.fixture
def signup_env(env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("BASTION_SIGNUP_ENABLED", "true")
    monkeypatch.setenv("BASTION_LOGIN_RATE_LIMIT", "1000/minute")


def test_signup_then_admin_approves_from_the_cli(signup_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = open_context()
    try:
        with TestClient(create_app(context=ctx), raise_server_exceptions=False) as http:
            monkeypatch.setattr(
                sdk_module,
                "BastionClient",
                lambda url=None, api_key=None, verify=None: BastionClient(http=http),
            )
            signed = runner.invoke(
                app,
                ["signup", "--username", "dana", "--email", "dana@example.org", "--json"],
                input=f"{PASSWORD}\n{PASSWORD}\n",
            )
            assert signed.exit_code == 0, signed.output
            assert cli_json(signed.stdout)["success"] is True
            listed = runner.invoke(app, ["users", "signups", "--json"])
            assert listed.exit_code == 0 and [r["username"] for r in json.loads(listed.stdout)] == ["dana"]
            approved = runner.invoke(app, ["users", "approve", "dana", "--json"])
            assert approved.exit_code == 0 and json.loads(approved.stdout)["role"] == "user"
            again = runner.invoke(app, ["users", "approve", "dana"])
            assert again.exit_code == 1 and "not found" in again.output
            logged = runner.invoke(app, ["login", "--username", "dana", "--json"], input=f"{PASSWORD}\n")
            assert logged.exit_code == 0, logged.output
            token = cli_json(logged.stdout)["access_token"]
            assert (
                http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["username"]
                == "dana"
            )
    finally:
        ctx.close()
