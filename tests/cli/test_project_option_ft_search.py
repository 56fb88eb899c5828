"""``--project`` on the fine-tuning commands and on ``train search``: each creates in the named
project (a colleague there can use what was made), lists only it, and a stranger gets not_found."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion.cli.main import app
from tests.cli.test_projects_cli import _as
from tests.cli.test_train_cli import _out
from tests.conftest import Caller
from tests.llm.support import build_model, chat_records, jsonl, register
from tests.projects.test_project_routes import add, new_project

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
runner = CliRunner()


def _cli(args: list[str], code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(_out(result.stdout)) if code == 0 else result.output


def test_ft_and_search_take_project(
    client: TestClient,
    make_caller: Callable[..., Caller],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    admin, alice, bob, dave = (make_caller(r, n) for r, n in [("admin", "root"), ("user", "alice"),
                                                                ("user", "bob"), ("user", "dave")])  # fmt: skip
    register(client, admin, build_model(tmp_path / "llm"))
    pid = new_project(client, alice, "Clinical notes")
    add(client, alice, pid, bob, "member")
    data = tmp_path / "notes.jsonl"
    data.write_bytes(jsonl(chat_records(8)))

    _as(monkeypatch, client, bob)
    uploaded = _cli(["ft", "upload", str(data), "--model", "tiny", "--project", pid])
    assert uploaded["project_id"] == pid
    mine = _cli(["ft", "upload", str(data), "--model", "tiny"])
    assert mine["project_id"] not in (None, pid), "without --project: bob's personal project"

    _as(monkeypatch, client, alice)  # a colleague fine-tunes on bob's file, in the project
    job = _cli(["ft", "create", "-m", "tiny", "-t", uploaded["id"], "--epochs", "1", "--project", pid])
    assert job["project_id"] == pid
    assert [j["id"] for j in _cli(["ft", "list", "--project", pid])["data"]] == [job["id"]]
    assert "not_found" in _cli(["ft", "create", "-m", "tiny", "-t", mine["id"], "--project", pid], code=1)

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"C": {"type": "float", "low": 0.01, "high": 10, "log": True}}))
    search = ["train", "search", "-m", "alzheimer_classifier", "-d", "breast_cancer", "--space", str(space),
              "--trials", "2", "--cv", "2", "-p", "estimator=logistic_regression"]  # fmt: skip
    submitted = _cli([*search, "--project", pid])
    job_id = submitted["job_id"] if isinstance(submitted, dict) else submitted
    r = client.get(f"/api/v1/training/status/{job_id}", headers=bob.headers)
    assert r.status_code == 200 and r.json()["project_id"] == pid

    _as(monkeypatch, client, dave)
    assert "not_found" in _cli(["ft", "list", "--project", pid], code=1)
    assert "not_found" in _cli(["ft", "upload", str(data), "--model", "tiny", "--project", pid], code=1)
    assert "not_found" in _cli([*search, "--project", pid], code=1)
