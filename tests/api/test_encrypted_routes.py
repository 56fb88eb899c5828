"""Encrypted predictions over HTTP: equal to plaintext ones, scoped to the owner, audited, refusing
bad requests with stable codes, and leaving no plaintext in the database or the vault."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bastion.client import he
from bastion.client.sdk import BastionClient
from bastion.context import Context
from tests.conftest import Caller


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    from bastion.data.builtin import load_dataset
    from bastion.ml.train import train

    cancer = load_dataset("breast_cancer")
    return {
        "data": cancer,
        "logistic": train(
            "alzheimer_classifier", cancer, {"estimator": "logistic_regression", "importance_repeats": 0}
        ),
        "mlp": train("he_mlp", cancer, {"hidden_layers": [8], "epochs": 25, "importance_repeats": 0}),
        "forest": train("alzheimer_classifier", cancer, {"n_estimators": 3, "importance_repeats": 0}),
    }


def _register(ctx: Context, owner: Caller, result: Any, name: str) -> str:
    view = ctx.services.models.register(
        owner.user_id,
        name,
        result.model_bytes,
        result.model_format,
        config=result.model_config,
        metrics={},
    )
    return str(view.model_id)


def _rows(data: Any, n: int, seed: int = 7) -> list[dict[str, float]]:
    """Real rows nudged by a random 1e-6, so every value is a string found nowhere else."""
    rng = np.random.default_rng(seed)
    X = data.X[:n] * (1 + rng.uniform(1e-6, 2e-6, size=data.X[:n].shape))
    return [dict(zip(data.feature_names, map(float, x), strict=True)) for x in X]


def _sdk(client: TestClient, who: Caller) -> BastionClient:
    return BastionClient("http://testserver", who.key, http=client)


def _store_text(ctx: Context) -> str:
    """Every row of every table, as text."""
    from sqlalchemy import MetaData, select

    meta = MetaData()
    meta.reflect(ctx.db.engine)
    out = []
    with ctx.db.engine.connect() as conn:
        for table in meta.sorted_tables:
            out.extend(repr(tuple(r)) for r in conn.execute(select(table)))
    return "\n".join(out)


def _vault_files(ctx: Context) -> dict[str, int]:
    root = Path(ctx.settings.vault_dir)
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_encrypted_equals_plaintext_and_nothing_plain_is_kept(
    client: TestClient,
    ctx: Context,
    alice: Caller,
    trained: dict[str, Any],
    kind: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    model_id = _register(ctx, alice, trained[kind], f"cancer-{kind}")
    rows = _rows(trained["data"], 569)
    sdk = _sdk(client, alice)
    plain = sdk.models.predict(model_id, rows, probabilities=True)
    vault_before = _vault_files(ctx)
    enc = sdk.models.predict_encrypted(model_id, rows)
    same = np.mean(np.asarray(enc["predictions"]) == np.asarray(plain["predictions"]))
    assert same >= 0.999
    assert np.abs(np.asarray(enc["probabilities"]) - np.asarray(plain["probabilities"])).max() < 1e-3
    spec = sdk.models.encryption_spec(model_id)
    assert spec["depth"] == (1 if kind == "logistic" else 3)
    assert spec["parameters"]["poly_modulus_degree"] == (8192 if kind == "logistic" else 16384)

    # Nothing of the request's plaintext (inputs, scores, probabilities) in DB, vault or logs.
    assert _vault_files(ctx) == vault_before
    needles = [repr(v) for row in rows[:20] for v in list(row.values())[:5]]
    needles += [f"{s[0]:.6f}"[:9] for s in enc["scores"][:20]]
    haystacks = {
        "database": _store_text(ctx),
        "logs": capsys.readouterr().out + caplog.text,
    }
    for where, hay in haystacks.items():
        leaked = [n for n in needles if n in hay]
        assert not leaked, f"{where} holds plaintext of the encrypted request: {leaked[:3]}"
    with ctx.db.engine.connect() as conn:
        audit = conn.execute(
            text("SELECT action, outcome, details FROM audit_log WHERE action = 'model.predict_encrypted'")
        ).fetchall()
    details = audit[0][2] if isinstance(audit[0][2], dict) else json.loads(audit[0][2])
    assert len(audit) == 1 and audit[0][1] == "success" and details["rows"] == 569


def test_foreign_unsupported_and_malformed_requests(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller, trained: dict[str, Any]
) -> None:
    model_id = _register(ctx, alice, trained["logistic"], "cancer")
    forest_id = _register(ctx, alice, trained["forest"], "forest")
    url = f"/api/v1/models/{model_id}"
    assert client.get(url + "/encrypted/spec", headers=bob.headers).status_code == 404
    spec = client.get(url + "/encrypted/spec", headers=alice.headers).json()
    r = client.get(f"/api/v1/models/{forest_id}/encrypted/spec", headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "he_unsupported_model"

    batch = he.encrypt(spec, he.encode_rows(spec["inputs"], _rows(trained["data"], 4)))
    r = client.post(url + "/predict/encrypted", json=batch.request, headers=bob.headers)
    assert r.status_code == 404
    truncated = dict(
        batch.request,
        groups=[
            {
                "n_rows": 4,
                "columns": [c[: len(c) // 2 // 4 * 4] for c in batch.request["groups"][0]["columns"]],
            }
        ],
    )
    r = client.post(url + "/predict/encrypted", json=truncated, headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "he_bad_ciphertext"
    secret = base64.b64encode(batch.context.serialize(save_secret_key=True)).decode()
    r = client.post(
        url + "/predict/encrypted", json=dict(batch.request, context=secret), headers=alice.headers
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "he_secret_key_sent"
    r = client.post(
        url + "/predict/encrypted", json=dict(batch.request, context="***"), headers=alice.headers
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "he_bad_request"
    ctx.settings.he_max_request_bytes = 4096
    r = client.post(url + "/predict/encrypted", json=batch.request, headers=alice.headers)
    assert r.status_code == 413
    with ctx.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT outcome, details FROM audit_log WHERE action = 'model.predict_encrypted'")
        ).fetchall()
    reasons = sorted((json.loads(d) if isinstance(d, str) else d)["reason"] for _, d in rows)
    # bob's attempt on alice's model is audited as a failure too (not_found), like the two bad requests
    assert {o for o, _ in rows} == {"failure"}
    assert reasons == ["he_bad_ciphertext", "he_secret_key_sent", "not_found"]
