"""``bastion train search`` and ``train submit --resources`` through the SDK against a real app."""

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
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
runner = CliRunner()


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def _wire(monkeypatch: pytest.MonkeyPatch, http: Any, key: str) -> None:
    def make(url: str | None = None, api_key: str | None = None, verify: Any = None) -> BastionClient:
        return BastionClient(api_key=api_key or key, http=http)

    monkeypatch.setattr(sdk_module, "BastionClient", make)


def _json(args: list[str], code: int = 0) -> Any:
    result = runner.invoke(app, ["train", *args, "--json"])
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stdout.splitlines() if not ln[:4].isdigit()]
    return json.loads("\n".join(lines))


def test_search_runs_trials_and_reports_the_table(
    api: ApiFactory, alice: Caller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _wire(monkeypatch, api("bastion.jobs.runner:run_training"), alice.key)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"C": {"type": "float", "low": 0.01, "high": 10, "log": True}}))
    final = _json(
        [
            "search",
            "-m",
            "alzheimer_classifier",
            "-d",
            "breast_cancer",
            "--space",
            str(space),
            "--trials",
            "3",
            "--parallel",
            "2",
            "--cv",
            "3",
            "-p",
            "estimator=logistic_regression",
            "-p",
            "importance_repeats=0",
            "--watch",
        ]
    )
    assert final["status"] == "completed", final.get("error_message")
    summary = final["results"]["search"]
    assert len(summary["trials"]) >= 3 and all(len(t["folds"]) == 3 for t in summary["trials"] if t["cv"])
    assert summary["best_cv"]["mean"] == max(
        t["cv_mean"] for t in summary["trials"] if t["cv_mean"] is not None
    )
    assert [h["number"] for h in final["history"]], "each finished trial is a row of the live history"


def test_submit_with_resources_and_bad_resources(
    api: ApiFactory, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    _wire(monkeypatch, api("quick"), alice.key)
    submitted = _json(
        ["submit", "-m", "alzheimer_classifier", "-d", "wine", "--resources", "cpus=1,memory=512MiB"]
    )
    status = _json(["status", submitted["job_id"]])
    assert status["resources"] == {"cpus": 1.0, "gpus": 0.0, "memory_mb": 512.0}
    distributed = _json(
        ["submit", "-m", "adaptive_neural_net", "-d", "wine", "--num-workers", "2", "--resources", "gpus=1"]
    )
    shown = _json(["status", distributed["job_id"]])
    assert shown["params"]["num_workers"] == 2 and shown["resources"]["gpus"] == 1.0
    bad = runner.invoke(
        app,
        ["train", "submit", "-m", "alzheimer_classifier", "-d", "wine", "--resources", "tpus=1", "--json"],
    )
    assert bad.exit_code != 0 and "tpus" in bad.output
