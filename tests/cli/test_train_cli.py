"""``bastion train …`` through the SDK against a real app (every command with --json)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bastion.cli import train as train_cli
from bastion.cli.main import app
from bastion.client import BastionClient
from bastion.client import sdk as sdk_module
from bastion.context import Context
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, Harness, api_factory

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
runner = CliRunner()


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def _wire(monkeypatch: pytest.MonkeyPatch, http: Any, key: str) -> None:
    monkeypatch.setattr(
        sdk_module,
        "BastionClient",
        lambda url=None, api_key=None, verify=None: BastionClient(api_key=api_key or key, http=http),
    )


# The app under test runs in this process, so its access log lines share stdout with the command.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def _out(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _LOG_LINE.match(line))


def _json(args: list[str], code: int = 0) -> Any:
    result = runner.invoke(app, ["train", *args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(_out(result.stdout))


def test_submit_watch_status_list_logs(
    api: ApiFactory, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    _wire(monkeypatch, api("quick"), alice.key)
    final = _json(
        [
            "submit",
            "-m",
            "adaptive_neural_net",
            "-d",
            "wine",
            "--param",
            "epochs=3",
            "--param",
            "hidden_layers=[8, 4]",
            "--param",
            "optimizer=adam",
            "--watch",
        ]
    )
    assert final["status"] == "completed" and final["results"]["accuracy"] == 0.8
    assert final["params"]["epochs"] == 3 and final["params"]["hidden_layers"] == [8, 4]
    job_id = final["job_id"]
    assert _json(["status", job_id])["status"] == "completed"
    assert [j["job_id"] for j in _json(["list"])] == [job_id]
    assert "hello from the job" in [ln["line"] for ln in _json(["logs", job_id])["lines"]]
    plain = runner.invoke(app, ["train", "status", job_id])
    assert plain.exit_code == 0 and "completed" in plain.stdout and "accuracy: 0.8" in plain.stdout


def test_watch_draws_a_progress_bar_on_a_terminal(
    api: ApiFactory, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    _wire(monkeypatch, api("quick"), alice.key)
    screen = io.StringIO()
    monkeypatch.setattr(train_cli, "console", Console(file=screen, force_terminal=True, width=120))
    result = runner.invoke(app, ["train", "submit", "-m", "alzheimer_classifier", "-d", "wine", "--watch"])
    assert result.exit_code == 0, result.output
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "100%" in drawn and "completed" in drawn and "accuracy: 0.8" in drawn


def test_cancel_and_errors(api: ApiFactory, alice: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
    http = api("block")
    harness: Harness = http.harness  # type: ignore[attr-defined]
    _wire(monkeypatch, http, alice.key)
    job_id = _json(["submit", "-m", "alzheimer_classifier", "-d", "wine"])["job_id"]
    harness.started_pid(job_id)
    assert _json(["cancel", job_id])["status"] == "cancelled"
    assert _json(["cancel", job_id])["message"] == "Job was already cancelled"
    error = _json(["submit", "-m", "resnet", "-d", "wine"], code=1)["error"]
    assert error["code"] == "invalid" and "alzheimer_classifier" in error["message"]
    human = runner.invoke(app, ["train", "status", "00000000-0000-4000-8000-000000000000"])
    assert human.exit_code == 1 and "training job not found" in human.output
    bad = runner.invoke(app, ["train", "submit", "-m", "x", "-d", "wine", "--param", "novalue"])
    assert bad.exit_code == 2


def test_download_and_predict_a_torch_model(
    api: ApiFactory, alice: Caller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _wire(monkeypatch, api("bastion.jobs.runner:run_training"), alice.key)
    final = _json(
        [
            "submit",
            "-m",
            "adaptive_neural_net",
            "-d",
            "wine",
            "-p",
            "epochs=5",
            "-p",
            "hidden_layers=[16]",
            "-p",
            "importance_repeats=0",
            "--watch",
        ]
    )
    assert final["status"] == "completed", final["error_message"]
    assert len(final["history"]) == 5 and all("val_loss" in h for h in final["history"])
    target = tmp_path / "net.safetensors"
    saved = _json(["download", final["job_id"], "-o", str(target)])
    assert (
        saved["model_format"] == "safetensors" and Path(saved["config_file"]).name == "net.safetensors.json"
    )
    from safetensors.numpy import load_file

    assert load_file(str(target)), "a plain safetensors file, loadable without Bastion"
    config = json.loads(Path(saved["config_file"]).read_text())
    assert config["model_format"] == "safetensors" and config["model_config"]["task"] == "classification"

    from bastion.data.builtin import load_dataset

    data = load_dataset("wine")
    rows = [
        dict(zip(data.feature_names, map(float, r), strict=True)) | {"target": "ignored"} for r in data.X[:10]
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    out = _json(["predict", str(target), "--input", str(tmp_path / "rows.json"), "--proba"])
    assert out["rows"] == 10 and set(out["predictions"]) <= set(data.target_names or [])
    assert all(abs(sum(p) - 1.0) < 1e-4 for p in out["probabilities"])
    csv = tmp_path / "rows.csv"
    csv.write_text(",".join(data.feature_names) + "\n" + "\n".join(",".join(map(str, r)) for r in data.X[:3]))
    plain = runner.invoke(app, ["train", "predict", str(target), "-i", str(csv)])
    assert plain.exit_code == 0 and len(_out(plain.stdout).strip().splitlines()) == 3
    missing = runner.invoke(app, ["train", "predict", str(tmp_path / "nope.skops"), "-i", str(csv)])
    assert missing.exit_code == 1 and "missing model file" in missing.output
