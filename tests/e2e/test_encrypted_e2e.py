"""A prediction the server never sees in plaintext, following the README, against `bastion serve`:
train a logistic model as a job, then `bastion models predict --encrypted`, and look through the
server's logs, its database file and its vault for the rows and the results."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client.sdk import BastionClient
from tests.conftest import ServerProcess
from tests.jobs.support import wait_for

pytestmark = pytest.mark.e2e
runner = CliRunner()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_encrypted_prediction_leaves_no_plaintext(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    from bastion.data.builtin import load_dataset

    server = server_factory(BASTION_LOG_LEVEL="debug").start()
    key = server.keys["user"]
    with BastionClient(server.url, key, timeout=120) as sdk:
        job = sdk.jobs.submit(
            "alzheimer_classifier",
            "breast_cancer",
            params={"estimator": "logistic_regression", "importance_repeats": 0},
        )
        assert sdk.jobs.wait(job, timeout=180)["status"] == "completed"
        registered = wait_for(
            lambda: [m["id"] for m in sdk.models.list() if m["name"] == "alzheimer_classifier-breast_cancer"],
            60,
            0.2,
            "the job's model in the registry",
        )
        model_id = registered[0]
        predictor = sdk.jobs.download(job).predictor()

    data = load_dataset("breast_cancer")
    rng = np.random.default_rng(11)
    X = data.X[:300] * (1 + rng.uniform(1e-6, 2e-6, size=data.X[:300].shape))  # values found nowhere else
    rows = [dict(zip(data.feature_names, map(float, x), strict=True)) for x in X]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    data_dir = server.data_dir / ".bastion"
    before = _files(data_dir / "vault")

    env = {"BASTION_URL": server.url, "BASTION_API_KEY": key}
    out = runner.invoke(
        app,
        ["models", "predict", model_id, "--input", str(tmp_path / "rows.json"), "--encrypted", "--json"],
        env=env,
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["encrypted"] is True
    expected = predictor.predict(rows)
    assert np.mean(np.asarray(result["predictions"]) == np.asarray(expected)) >= 0.999
    proba = np.asarray(result["probabilities"])
    assert np.abs(proba - predictor.predict_proba(rows)).max() < 1e-3

    needles = [repr(v) for row in rows[:30] for v in list(row.values())[:4]]
    needles += [f"{s[0]:.6f}"[:9] for s in result["scores"][:30]]
    needles += [f"{p[1]:.6f}" for p in result["probabilities"][:30] if 0.01 < p[1] < 0.99]
    logs = server.text()
    assert "predict/encrypted" in logs  # the access log saw the request ...
    assert not [n for n in needles if n in logs]  # ... but none of its values
    db = sqlite3.connect(data_dir / "bastion.db")
    dump = "\n".join(db.iterdump())
    audit = db.execute("SELECT details FROM audit_log WHERE action = 'model.predict_encrypted'").fetchall()
    db.close()
    assert not [n for n in needles if n in dump]
    assert len(audit) == 1 and json.loads(audit[0][0])["rows"] == 300
    assert _files(data_dir / "vault") == before  # no ciphertext, key or result was stored
