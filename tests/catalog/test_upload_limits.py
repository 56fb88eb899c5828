"""Upload limits at the route: a deeply nested policy is a 422, the per-user storage quota a 413."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion.config import Settings
from bastion.context import Context
from tests.conftest import Caller, make_settings

CSV = b"age,score\n" + b"30,1\n" * 200


def test_deeply_nested_policy_is_bad_policy_not_500(client: TestClient, alice: Caller) -> None:
    deep = '{"columns": ' * 5000 + "{}" + "}" * 5000
    r = client.post(
        "/api/v1/datasets", files={"file": ("a.csv", CSV)}, data={"policy": deep}, headers=alice.headers
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_policy", r.text
    # The query parameter is capped at 2000 characters (a longer one is a plain validation_error), so
    # this one is short but still nested far deeper than the 32 levels a policy may have.
    deep_but_short = '{"columns": ' * 100 + "{}" + "}" * 100
    assert len(deep_but_short) < 2000
    r = client.post(
        "/api/v1/datasets",
        params={"policy": deep_but_short},
        content=CSV,
        headers={**alice.headers, "content-type": "text/csv"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_policy", r.text


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """This module's app: room for two uploads of CSV per user."""
    return make_settings(tmp_path, db_url, user_storage_quota_bytes=2 * len(CSV) + 10)


def test_storage_quota_per_user(client: TestClient, ctx: Context) -> None:
    quota_client = client
    keys = {}
    for name in ("kim", "lee"):
        user = ctx.accounts.create_user(name, "user")
        keys[name] = {
            "X-API-Key": ctx.accounts.create_key(user.id, "t").plaintext,
            "content-type": "text/csv",
        }

    def send(who: str) -> int:
        return quota_client.post("/api/v1/datasets", content=CSV, headers=keys[who]).status_code

    assert [send("kim"), send("kim")] == [201, 201]
    r = quota_client.post("/api/v1/datasets", content=CSV, headers=keys["kim"])
    assert r.status_code == 413 and r.json()["error"]["code"] == "storage_quota_exceeded"
    assert send("lee") == 201, "the quota is per user"
    first = quota_client.get("/api/v1/datasets", headers=keys["kim"]).json()["data"][0]["id"]
    assert quota_client.delete(f"/api/v1/datasets/{first}", headers=keys["kim"]).status_code == 200
    assert send("kim") == 201, "deleting frees quota"


def test_quota_counts_models_and_refuses_new_jobs(client: TestClient, ctx: Context) -> None:
    """Model versions count against the quota too; over it, uploads and job submits are refused."""
    import numpy as np
    from safetensors.numpy import save

    user = ctx.accounts.create_user("mia", "user")
    headers = {"X-API-Key": ctx.accounts.create_key(user.id, "t").plaintext}
    assert (
        client.post(
            "/api/v1/datasets", content=CSV, headers={**headers, "content-type": "text/csv"}
        ).status_code
        == 201
    )
    weights = save({"w": np.zeros(len(CSV) // 4 + 8, dtype=np.float32)})
    ctx.services.models.register(user.id, "m", weights, "safetensors", config={}, metrics={})
    r = client.post("/api/v1/datasets", content=CSV, headers={**headers, "content-type": "text/csv"})
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "storage_quota_exceeded" and "models" in error["message"]
    submit = {"model_type": "alzheimer_classifier", "dataset_source": "synthetic_test_data"}
    r = client.post("/api/v1/training/submit", json=submit, headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "storage_quota_exceeded", r.text
