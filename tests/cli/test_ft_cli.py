"""`bastion ft …`, `bastion llm …` and `bastion models generate` through ``client.fine_tuning`` against a
real app whose job blocks until cancelled (no training: the commands, not LoRA, are under test)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.context import Context
from tests.cli.test_projects_cli import _as
from tests.cli.test_train_cli import _out
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory
from tests.llm.support import build_model, chat_records, jsonl

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
runner = CliRunner()


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def _cli(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(_out(result.stdout))


def test_ft_llm_and_generate_commands(
    api: ApiFactory, admin: Caller, alice: Caller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    http = api("block")
    _as(monkeypatch, http, admin)
    assert _cli("llm", "register", str(build_model(tmp_path / "llm")), "--name", "tiny")["name"] == "tiny"
    _as(monkeypatch, http, alice)
    assert [m["name"] for m in _cli("llm", "list")] == ["tiny"]
    data = tmp_path / "notes.jsonl"
    data.write_bytes(jsonl(chat_records(8)))
    f = _cli("ft", "upload", str(data), "--model", "tiny")
    assert _cli("ft", "create", "-m", "tiny", "-t", f["id"], "--estimate")["profiles"]

    job = _cli("ft", "create", "-m", "tiny", "-t", f["id"], "--epochs", "1", "--num-workers", "1")
    assert _cli("ft", "show", job["id"])["id"] == job["id"]
    assert [j["id"] for j in _cli("ft", "list")["data"]] == [job["id"]]
    http.harness.started_pid(job["id"])  # type: ignore[attr-defined]
    assert _cli("ft", "events", job["id"])["data"]
    assert _cli("ft", "checkpoints", job["id"]) == []
    assert _cli("ft", "cancel", job["id"])["status"] == "cancelled"
    followed = runner.invoke(app, ["ft", "events", job["id"], "--follow", "--json"])
    lines = [json.loads(line) for line in _out(followed.stdout).splitlines() if line.strip()]
    assert followed.exit_code == 0 and lines[-1]["status"] == "cancelled"

    options = ["--max-new-tokens", "4", "--temperature", "0"]
    out = _cli("models", "generate", "tiny", "--prompt", "Patient has fever.", *options)
    streamed = runner.invoke(app, ["models", "generate", "tiny", "--prompt", "Patient has fever.", *options, "--stream"])  # fmt: skip
    assert streamed.exit_code == 0 and out["text"] in _out(streamed.stdout)
