"""The README's fine-tuning walk-through against a real `bastion serve`: tiny model → adapter → test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from tests.conftest import ServerProcess
from tests.e2e.support import another_user
from tests.llm.support import chat_records, jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
runner = CliRunner()


def run(*args: str, env: dict[str, str]) -> dict | list:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_readme_walkthrough(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = server_factory().start()
    user = {"BASTION_URL": server.url, "BASTION_API_KEY": server.keys["user"]}
    admin = {**user, "BASTION_API_KEY": server.keys["admin"]}
    model_dir = tmp_path / "tiny-gpt2"
    run("llm", "make-tiny", str(model_dir), "--hidden", "32", env=user)
    registered = run("llm", "register", str(model_dir), "--name", "tiny", env=admin)
    assert registered["architecture"] == "GPT2LMHeadModel"
    denied = runner.invoke(app, ["llm", "register", str(model_dir), "--name", "x"], env=user)
    assert denied.exit_code == 1 and "insufficient_role" in denied.output
    assert [m["name"] for m in run("llm", "list", env=user)] == ["tiny"]  # type: ignore[index]

    data = tmp_path / "notes.jsonl"
    data.write_bytes(jsonl(chat_records(32)))
    uploaded = run("ft", "upload", str(data), "--model", "tiny", env=user)
    assert uploaded["deidentification"]["replaced"]["NAME"] == 32  # type: ignore[index]
    est = run("ft", "create", "-m", "tiny", "-t", uploaded["id"], "--estimate", env=user)  # type: ignore[index]
    assert est["estimated_cost"] > 0  # type: ignore[index]

    created = runner.invoke(
        app,
        ["ft", "create", "-m", "tiny", "-t", uploaded["id"], "--epochs", "3", "--batch-size", "4",  # type: ignore[index]
         "--learning-rate", "0.05", "--set", "lora.r=4", "--suffix", "demo", "--watch", "--json"],
        env=user,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    lines = [json.loads(ln) for ln in created.output.splitlines() if ln.strip()]
    final = lines[-1]
    assert final["status"] == "succeeded" and final["hyperparameters"]["lora"]["r"] == 4
    assert any(ev.get("type") == "metrics" for ev in lines[:-1])
    job_id = final["id"]
    assert run("ft", "show", job_id, env=user)["fine_tuned_model"] == final["fine_tuned_model"]  # type: ignore[index]
    assert [j["id"] for j in run("ft", "list", env=user)["data"]] == [job_id]  # type: ignore[index]
    assert len(run("ft", "checkpoints", job_id, env=user)) == 3
    assert run("ft", "events", job_id, env=user)["data"]  # type: ignore[index]
    finished = runner.invoke(app, ["ft", "cancel", job_id, "--json"], env=user)
    assert finished.exit_code == 1 and "job_finished" in finished.output

    answer = run(
        "models", "generate", final["fine_tuned_model"], "--message", "user:Patient has rash. Treatment?",
        "--max-new-tokens", "6", "--temperature", "0", "--compare", env=user,
    )  # fmt: skip
    assert answer["text"] != answer["base"]["text"]  # type: ignore[index]
    stranger = {**user, "BASTION_API_KEY": another_user(server)}
    other = runner.invoke(app, ["ft", "show", job_id, "--json"], env=stranger)
    assert other.exit_code == 1 and "not_found" in other.output
