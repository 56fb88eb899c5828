"""`bastion models quantize|download|access-code`, `bastion data show --preview|access-code` and
`bastion train predict --proba` through the SDK against the app, with real training jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client import BastionClient
from bastion.client import sdk as sdk_module
from bastion.context import Context
from tests.catalog.test_datasets import patient_csv
from tests.cli.test_train_cli import _out
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory

runner = CliRunner()
NAME = "adaptive_neural_net-wine"


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def _cli(args: list[str], code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(_out(result.stdout))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_model_and_dataset_commands(
    api: ApiFactory, alice: Caller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    http = api("bastion.jobs.runner:run_training")
    monkeypatch.setattr(
        sdk_module,
        "BastionClient",
        lambda url=None, api_key=None, verify=None: BastionClient(api_key=alice.key, http=http),
    )
    client = BastionClient(api_key=alice.key, http=http)
    job = client.jobs.submit(
        "adaptive_neural_net", "wine", params={"epochs": 3, "hidden_layers": [16], "importance_repeats": 0}
    )
    assert client.jobs.wait(job)["status"] == "completed"
    sk = client.jobs.submit("alzheimer_classifier", "wine", params={"importance_repeats": 0})
    assert client.jobs.wait(sk)["status"] == "completed"

    quantized = _cli(["models", "quantize", NAME])
    assert (
        quantized["version"]["version"] == 2
        and quantized["report"]["size_after"] < quantized["report"]["size_before"]
    )
    refused = _cli(["models", "quantize", "alzheimer_classifier-wine"], code=1)
    assert refused["error"]["code"] == "not_quantizable"

    target = tmp_path / "q.safetensors"
    saved = _cli(["models", "download", NAME, "--version", "2", "-o", str(target)])
    assert Path(saved["model_file"]).exists() and Path(saved["config_file"]).exists()
    from bastion.data.builtin import load_dataset

    data = load_dataset("wine")
    rows = tmp_path / "rows.json"
    rows.write_text(
        json.dumps([dict(zip(data.feature_names, map(float, r), strict=True)) for r in data.X[:3]])
    )
    shown = runner.invoke(app, ["train", "predict", str(target), "-i", str(rows), "--proba"])
    assert shown.exit_code == 0, shown.output
    lines = _out(shown.stdout).strip().splitlines()
    assert len(lines) == 3 and all(f"{c}=" in lines[0] for c in data.target_names or [])

    _cli(["models", "access-code", NAME, "--code", "model code 123"])
    denied = _cli(["models", "download", NAME, "-o", str(tmp_path / "x.safetensors")], code=1)
    assert denied["error"]["code"] == "access_code_required"
    ok = _cli(
        ["models", "download", NAME, "-o", str(tmp_path / "y.safetensors"), "--access-code", "model code 123"]
    )
    assert ok["success"]
    removed = _cli(["models", "access-code", NAME, "--remove", "--current", "model code 123"])
    assert removed["access_protected"] is False

    csv = tmp_path / "cohort.csv"
    csv.write_bytes(patient_csv())
    uploaded = _cli(["data", "upload", str(csv)])
    info = _cli(["data", "show", uploaded["id"], "--preview", "--limit", "2"])
    assert len(info["preview"]["rows"]) == 2 and info["preview"]["deidentification"]
    human = runner.invoke(app, ["data", "show", uploaded["id"]])
    assert human.exit_code == 0 and "reason" in human.stdout
    _cli(["data", "access-code", uploaded["id"], "--code", "data code 123"])
    locked = _cli(["data", "show", uploaded["id"], "--preview"], code=1)
    assert locked["error"]["code"] == "access_code_required"
    assert _cli(["data", "show", uploaded["id"], "--preview", "--access-code", "data code 123"])["preview"][
        "rows"
    ]

    txt = tmp_path / "notes.txt"
    txt.write_text("a,b\n1,2\n")
    refused_txt = _cli(["data", "upload", str(txt)], code=1)
    assert refused_txt["error"]["code"] == "text_not_a_table"
