"""The model registry over HTTP: scoping, best version, predict, access codes, refusing pickles."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bastion.auth.principal import Principal
from bastion.catalog.model_versions import ModelVersions
from bastion.context import Context
from bastion.errors import Invalid
from tests.conftest import Caller


def principal(c: Caller) -> Principal:
    return Principal(c.user_id, c.username, c.role, "api_key")


def register(ctx: Context, owner: Caller, trained: Any, name: str = "cancer", **kw: Any) -> Any:
    _, result = trained
    registry: ModelVersions = ctx.services.models
    metrics = kw.pop("metrics", result.metrics)
    return registry.register(
        owner.user_id,
        name,
        result.model_bytes,
        result.model_format,
        config=result.model_config,
        metrics=metrics,
        lineage={"job_id": "j1"},
        **kw,
    )


def rows(trained: Any, n: int = 3) -> list[dict[str, float]]:
    dataset, _ = trained
    return [dict(zip(dataset.feature_names, map(float, dataset.X[i]), strict=True)) for i in range(n)]


def test_register_list_get_predict(client: TestClient, ctx: Context, alice: Caller, trained: Any) -> None:
    view = register(ctx, alice, trained)
    models = client.get("/api/v1/models", headers=alice.headers).json()["data"]
    assert [m["name"] for m in models] == ["cancer"] and models[0]["latest_version"] == 1
    detail = client.get(f"/api/v1/models/{view.model_id}", headers=alice.headers).json()
    assert detail["history"][0]["lineage"] == {"job_id": "j1"}
    assert "config" not in detail["history"][0]
    r = client.post(
        f"/api/v1/models/{view.model_id}/predict",
        json={"rows": rows(trained), "probabilities": True},
        headers=alice.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 3 and len(body["probabilities"][0]) == len(body["classes"])
    dataset, _ = trained
    expected = [dataset.target_names[int(y)] for y in dataset.y[:3]]
    assert sum(p == e for p, e in zip(body["predictions"], expected, strict=True)) >= 2


def test_foreign_user_gets_404_everywhere(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller, trained: Any
) -> None:
    view = register(ctx, alice, trained)
    base = f"/api/v1/models/{view.model_id}"
    assert client.get(base, headers=bob.headers).status_code == 404
    assert client.get(base + "/best", headers=bob.headers).status_code == 404
    assert (
        client.post(base + "/predict", json={"rows": rows(trained)}, headers=bob.headers).status_code == 404
    )
    assert client.get("/api/v1/models", headers=bob.headers).json()["data"] == []


def test_best_version_by_metric(ctx: Context, client: TestClient, alice: Caller, trained: Any) -> None:
    _, result = trained
    register(ctx, alice, trained, metrics={**result.metrics, "accuracy": 0.80, "rmse": 0.5})
    v2 = register(ctx, alice, trained, metrics={**result.metrics, "accuracy": 0.95, "rmse": 0.9})
    register(ctx, alice, trained, metrics={**result.metrics, "accuracy": 0.90, "rmse": 0.2})
    best = client.get(
        f"/api/v1/models/{v2.model_id}/best", params={"metric": "accuracy"}, headers=alice.headers
    ).json()
    assert best["version"] == 2
    lowest = client.get(
        f"/api/v1/models/{v2.model_id}/best", params={"metric": "rmse"}, headers=alice.headers
    ).json()
    assert lowest["version"] == 3, "rmse is lower-is-better"
    assert (
        client.get(
            f"/api/v1/models/{v2.model_id}/best", params={"metric": "nope"}, headers=alice.headers
        ).status_code
        == 404
    )


def test_access_code_protects_a_version(
    client: TestClient, ctx: Context, alice: Caller, trained: Any
) -> None:
    view = register(ctx, alice, trained, access_code="open sesame 123")
    url = f"/api/v1/models/{view.model_id}/predict"
    body = {"rows": rows(trained, 1)}
    none = client.post(url, json=body, headers=alice.headers)
    assert none.status_code == 403 and none.json()["error"]["code"] == "access_code_required"
    ok = client.post(url, json=body, headers={**alice.headers, "X-Access-Code": "open sesame 123"})
    assert ok.status_code == 200
    codes = [
        client.post(url, json=body, headers={**alice.headers, "X-Access-Code": "guess"}).status_code
        for _ in range(3)
    ]
    assert codes[:2] == [403, 403]
    locked = client.post(url, json=body, headers={**alice.headers, "X-Access-Code": "open sesame 123"})
    assert locked.status_code == 423 and int(locked.headers["Retry-After"]) > 0
    from sqlalchemy import select

    from bastion.store.tables import AuditEvent

    with ctx.db.session() as s:
        denied = s.scalars(select(AuditEvent).where(AuditEvent.action == "vault.access_code")).all()
    assert len(denied) >= 3 and all("guess" not in d.details for d in denied)


def test_pickle_offered_as_a_model_is_refused(ctx: Context, alice: Caller) -> None:
    registry: ModelVersions = ctx.services.models
    payload = pickle.dumps({"weights": [1, 2, 3]})
    for fmt in ("skops", "safetensors"):
        with pytest.raises(Invalid):
            registry.register(alice.user_id, "evil", payload, fmt, config={}, metrics={})


def test_bad_predict_rows_are_422(client: TestClient, ctx: Context, alice: Caller, trained: Any) -> None:
    view = register(ctx, alice, trained)
    url = f"/api/v1/models/{view.model_id}/predict"
    assert client.post(url, json={"rows": []}, headers=alice.headers).status_code == 422
    r = client.post(url, json={"rows": [{"nonsense": 1}]}, headers=alice.headers)
    assert r.status_code == 422, r.text


def test_quantize_a_torch_version_reports_size_and_accuracy(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller, trained: Any
) -> None:
    from bastion.data.builtin import load_dataset
    from bastion.ml.train import train

    dataset = load_dataset("breast_cancer")
    result = train("adaptive_neural_net", dataset, {"epochs": 5, "hidden_layers": [32]})
    registry: ModelVersions = ctx.services.models
    view = registry.register(
        alice.user_id,
        "net",
        result.model_bytes,
        result.model_format,
        config=result.model_config,
        metrics=result.metrics,
        lineage={"dataset_source": "breast_cancer", "seed": 0},
    )
    url = f"/api/v1/models/{view.model_id}/quantize"
    assert client.post(url, json={}, headers=bob.headers).status_code == 404
    r = client.post(url, headers=alice.headers)  # no body: the latest version (README's call)
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["size_after"] < report["size_before"]
    assert abs(report["accuracy_after"] - report["accuracy_before"]) <= 0.05
    assert r.json()["version"]["version"] == 2 and r.json()["version"]["lineage"]["quantized_from"] == 1
    served = client.post(
        f"/api/v1/models/{view.model_id}/predict",
        json={"rows": rows((dataset, result)), "version": 2},
        headers=alice.headers,
    )
    assert served.status_code == 200
    again = client.post(url, json={"version": 2}, headers=alice.headers)
    assert again.status_code == 409

    sk = register(
        ctx,
        alice,
        trained,
        name="sk",
    )
    assert (
        client.post(f"/api/v1/models/{sk.model_id}/quantize", json={}, headers=alice.headers).status_code
        == 422
    )


def test_model_names_are_unique_per_project_not_per_owner(
    client: TestClient, ctx: Context, alice: Caller, trained: Any
) -> None:
    """The same name in two projects is two models; a name that means two of them is refused (404
    ``ambiguous_model_name``), their ids still work; one project still holds one model per name."""
    pid = client.post(
        "/api/v1/projects", json={"name": "trial", "domain": "healthcare"}, headers=alice.headers
    ).json()["id"]
    personal = register(ctx, alice, trained)
    shared = register(ctx, alice, trained, project_id=pid)
    again = register(ctx, alice, trained, project_id=pid)
    assert personal.model_id != shared.model_id and again.model_id == shared.model_id
    assert (again.version, shared.version) == (2, 1)
    r = client.get("/api/v1/models/cancer", headers=alice.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "ambiguous_model_name"
    for mid in (personal.model_id, shared.model_id):
        assert client.get(f"/api/v1/models/{mid}", headers=alice.headers).json()["name"] == "cancer"
