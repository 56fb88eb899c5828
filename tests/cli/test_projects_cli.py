"""`bastion projects …` through the SDK against the app: create, share, change roles, last owner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client import BastionClient
from bastion.client import sdk as sdk_module
from tests.cli.test_train_cli import _out
from tests.conftest import Caller
from tests.projects.test_project_routes import CSV

runner = CliRunner()


def _as(monkeypatch: pytest.MonkeyPatch, http: TestClient, who: Caller) -> None:
    monkeypatch.setattr(
        sdk_module,
        "BastionClient",
        lambda url=None, api_key=None, verify=None: BastionClient(api_key=who.key, http=http),
    )


def _cli(args: list[str]) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(_out(result.stdout))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_projects_commands(
    client: TestClient, make_caller: Callable[..., Caller], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice, bob = make_caller("user", "alice"), make_caller("user", "bob")
    _as(monkeypatch, client, alice)
    assert "healthcare" in _cli(["projects", "domains"])
    project = _cli(
        ["projects", "create", "Cardiology", "--domain", "healthcare", "--subdomain", "cardiology"]
    )
    pid = project["id"]
    assert project["members"] == [{"user_id": alice.user_id, "username": "alice", "role": "owner"}]
    assert _cli(["projects", "add-member", pid, "bob", "--role", "viewer"])[0]["role"] == "viewer"
    assert _cli(["projects", "set-role", pid, "bob", "member"])[0]["role"] == "member"
    shown = _cli(["projects", "show", pid])
    assert {m["username"]: m["role"] for m in shown["members"]} == {"alice": "owner", "bob": "member"}
    assert _cli(["projects", "update", pid, "--name", "Cardiology 2027"])["name"] == "Cardiology 2027"
    people = _cli(["projects", "analytics", pid, "--view", "contributions"])["data"]
    assert {p["username"]: p["role"] for p in people} == {"alice": "owner", "bob": "member"}
    assert _cli(["projects", "analytics", pid, "--view", "resources"])["total"]["cpu_hours"] == 0.0
    result = runner.invoke(app, ["projects", "remove-member", pid, "alice"])
    assert result.exit_code != 0 and "owner" in result.output, result.output
    _as(monkeypatch, client, bob)
    csv = tmp_path / "cohort.csv"
    csv.write_bytes(CSV)
    uploaded = _cli(["data", "upload", str(csv), "--project", pid])
    assert uploaded["project_id"] == pid
    assert [d["id"] for d in _cli(["data", "list", "--project", pid])] == [uploaded["id"]]
    assert (
        _cli(["models", "list", "--project", pid]) == [] and _cli(["train", "list", "--project", pid]) == []
    )
    listed = _cli(["projects", "list"])
    assert pid in {p["id"] for p in listed} and len(listed) == 2, "the shared project and bob's personal one"
    assert _cli(["projects", "remove-member", pid, "bob"]) == {"removed": "bob", "project": pid}
    assert pid not in {p["id"] for p in _cli(["projects", "list"])}
