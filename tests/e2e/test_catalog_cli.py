"""`bastion data …` and `bastion models …` against a real server process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from tests.conftest import ServerProcess
from tests.e2e.support import another_user

pytestmark = pytest.mark.e2e
runner = CliRunner()


def test_upload_list_delete_and_models(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = server_factory().start()
    env = {"BASTION_URL": server.url, "BASTION_API_KEY": server.keys["user"]}
    csv = tmp_path / "cohort.csv"
    csv.write_text(
        "patient_name,ssn,mmse,cdr\nAda Lovelace,123-45-6789,28,0\nAlan Turing,987-65-4321,22,0.5\n"
    )

    up = runner.invoke(app, ["data", "upload", str(csv), "--name", "cohort", "--json"], env=env)
    assert up.exit_code == 0, up.output
    uploaded = json.loads(up.output)
    assert {a["column"]: a["action"] for a in uploaded["deidentification"]}["ssn"] == "drop"

    human = runner.invoke(app, ["data", "upload", str(csv)], env=env)
    assert human.exit_code == 0 and "De-identification" in human.output

    listed = json.loads(runner.invoke(app, ["data", "list", "--json"], env=env).output)
    assert {d["name"] for d in listed} == {"cohort", "cohort.csv"}

    other = {**env, "BASTION_API_KEY": another_user(server)}
    missing = runner.invoke(app, ["data", "delete", uploaded["id"]], env=other)
    assert missing.exit_code == 1 and "not_found" in missing.output, "another user's dataset is invisible"
    assert runner.invoke(app, ["data", "delete", uploaded["id"], "--json"], env=env).exit_code == 0

    models = runner.invoke(app, ["models", "list", "--json"], env=env)
    assert models.exit_code == 0 and isinstance(json.loads(models.output), list)
    bad_key = runner.invoke(app, ["data", "list"], env={**env, "BASTION_API_KEY": "bst_wrong"})
    assert bad_key.exit_code == 1 and "Traceback" not in bad_key.output
