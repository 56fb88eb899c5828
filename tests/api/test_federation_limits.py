"""Federation limits: a parameter cap checked from the spec, a per-user quota, and archiving."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bastion.config import Settings
from bastion.context import Context
from bastion.ml.fl_config import parameter_count
from bastion.ml.fl_models import build_model, parse_model_config
from tests.conftest import Caller, make_settings

BASE = "/api/v1/federations"
TINY = {"type": "tabular_mlp", "in_features": 4, "num_classes": 2, "hidden": [3]}


@pytest.mark.parametrize(
    "spec",
    [
        TINY,
        {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [64, 32]},
        {"type": "brain_tumour_cnn", "image_size": 64, "channels": [8, 16, 32], "hidden": 32},
        {"type": "brain_tumour_cnn", "in_channels": 3, "channels": [12], "hidden": 5, "num_classes": 7},
    ],
)
def test_parameter_count_matches_the_built_model(spec: dict[str, Any]) -> None:
    model = build_model(spec)
    assert parameter_count(parse_model_config(spec)) == sum(p.numel() for p in model.parameters())


def test_an_oversized_model_is_refused_before_any_weight_exists(client: TestClient, alice: Caller) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    body = {
        "name": "big",
        "model": {"type": "tabular_mlp", "in_features": 100_000, "hidden": [2048], "num_classes": 2},
    }
    r = client.post(BASE, json=body, headers=alice.headers)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "model_too_large" and err["parameters"] == 100_000 * 2048 + 2048 + 2048 * 2 + 2
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kib < 64 * 1024, f"peak RSS grew by {grown_kib // 1024} MiB"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """This module's app: a quota of two federations per user."""
    return make_settings(tmp_path, db_url, fl_max_federations_per_user=2)


def test_quota_and_archive(client: TestClient, ctx: Context) -> None:
    users = {}
    for name in ("ann", "eve"):
        user = ctx.accounts.create_user(name, "user")
        users[name] = {"X-API-Key": ctx.accounts.create_key(user.id, "t").plaintext}
    ann, eve = users["ann"], users["eve"]

    def create(name: str) -> Any:
        return client.post(BASE, json={"name": name, "model": TINY, "min_clients": 1}, headers=ann)

    first, _second = create("one").json(), create("two").json()
    third = create("three")
    assert third.status_code == 409 and third.json()["error"]["code"] == "federation_limit"

    token = client.post(f"{BASE}/{first['id']}/participants", json={"name": "a"}, headers=ann).json()["token"]
    site = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{BASE}/{first['id']}/site/info", headers=site).json()["state"] == "waiting"

    assert client.delete(f"{BASE}/{first['id']}", headers=eve).status_code == 404, "someone else's: 404"
    r = client.delete(f"{BASE}/{first['id']}", headers=ann)
    assert r.status_code == 200 and r.json()["state"] == "archived"
    assert client.get(f"{BASE}/{first['id']}/model", headers=ann).status_code == 404, "model deleted"
    assert client.get(f"{BASE}/{first['id']}/site/model", headers=site).status_code in (404, 409)
    assert client.get(f"{BASE}/{first['id']}/site/info", headers=site).json()["state"] == "archived"
    assert create("three").status_code == 201, "an archived federation frees its slot"
    # what stays is the initial global model, which is also the bytes of the registry's "fl-one"
    # version (stored once: bastion.catalog.stored); keys, state and updates are gone
    assert [a for a in ctx.vault.list() if first["id"] in a] == [f"flg-{first['id']}"]
    assert ctx.vault.versions(f"flg-{first['id']}") == [1]
    r = client.get("/api/v1/models/fl-one/download", headers=ann)
    assert r.status_code == 200 and r.json()["version"] == 1
