"""Access codes set, changed and removed over HTTP, for models and datasets: owner only, audited,
lockout on wrong codes; and a registered version downloaded encrypted for its caller."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.client import open_download
from bastion.context import Context
from bastion.store.tables import AuditEvent
from tests.catalog.test_datasets import patient_csv, upload
from tests.catalog.test_model_versions import register, rows
from tests.conftest import Caller

CODE, NEW = "first code 1234", "second code 5678"


def _audit(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_model_code_set_change_remove(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller, trained: Any
) -> None:
    view = register(ctx, alice, trained)
    base = f"/api/v1/models/{view.model_id}"
    predict = {"rows": rows(trained)}
    assert client.post(f"{base}/predict", json=predict, headers=alice.headers).status_code == 200

    # another user cannot touch it: 404 as if it did not exist
    r = client.put(f"{base}/access-code", json={"access_code": CODE}, headers=bob.headers)
    assert r.status_code == 404
    r = client.put(f"{base}/access-code", json={"access_code": CODE}, headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_id": view.model_id, "versions": [1], "access_protected": True}
    assert client.get(base, headers=alice.headers).json()["history"][0]["access_protected"] is True
    r = client.post(f"{base}/predict", json=predict, headers=alice.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "access_code_required"
    ok = client.post(f"{base}/predict", json=predict, headers={**alice.headers, "X-Access-Code": CODE})
    assert ok.status_code == 200

    # change needs the current code
    r = client.put(f"{base}/access-code", json={"access_code": NEW}, headers=alice.headers)
    assert r.status_code == 403
    r = client.put(
        f"{base}/access-code", json={"access_code": NEW}, headers={**alice.headers, "X-Access-Code": CODE}
    )
    assert r.status_code == 200
    old = client.post(f"{base}/predict", json=predict, headers={**alice.headers, "X-Access-Code": CODE})
    assert old.status_code == 403 and old.json()["error"]["code"] == "wrong_access_code"
    assert (
        client.post(
            f"{base}/predict", json=predict, headers={**alice.headers, "X-Access-Code": NEW}
        ).status_code
        == 200
    )

    # remove
    r = client.delete(f"{base}/access-code", headers={**alice.headers, "X-Access-Code": NEW})
    assert r.status_code == 200 and r.json()["access_protected"] is False
    assert client.post(f"{base}/predict", json=predict, headers=alice.headers).status_code == 200

    details = [e.details for e in _audit(ctx, "model.access_code")]
    assert [d for d in details if '"change"' in d] and all(CODE not in d and NEW not in d for d in details)
    changes = sorted(__import__("json").loads(d)["change"] for d in details)
    assert changes == ["changed", "removed", "set"]


def test_wrong_codes_on_change_lock_out(
    client: TestClient, ctx: Context, alice: Caller, trained: Any
) -> None:
    view = register(ctx, alice, trained, access_code=CODE)
    url = f"/api/v1/models/{view.model_id}/access-code"
    for _ in range(ctx.settings.max_failed_attempts):
        r = client.delete(url, headers={**alice.headers, "X-Access-Code": "guess"})
        assert r.status_code == 403
    r = client.delete(url, headers={**alice.headers, "X-Access-Code": CODE})
    assert r.status_code == 423 and int(r.headers["Retry-After"]) > 0
    assert len(_audit(ctx, "vault.access_code")) == ctx.settings.max_failed_attempts


def test_bad_new_code_is_422(client: TestClient, ctx: Context, alice: Caller, trained: Any) -> None:
    view = register(ctx, alice, trained)
    r = client.put(
        f"/api/v1/models/{view.model_id}/access-code", json={"access_code": ""}, headers=alice.headers
    )
    assert r.status_code == 422


def test_dataset_code_guards_preview_and_training(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller
) -> None:
    ds = upload(client, alice, patient_csv()).json()
    base = f"/api/v1/datasets/{ds['id']}"
    assert client.get(f"{base}/preview", headers=alice.headers).status_code == 200
    assert (
        client.put(f"{base}/access-code", json={"access_code": CODE}, headers=bob.headers).status_code == 404
    )
    r = client.put(f"{base}/access-code", json={"access_code": CODE}, headers=alice.headers)
    assert r.status_code == 200 and r.json() == {"dataset_id": ds["id"], "access_protected": True}
    assert client.get(base, headers=alice.headers).json()["access_protected"] is True
    r = client.get(f"{base}/preview", headers=alice.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "access_code_required"
    r = client.get(f"{base}/preview", headers={**alice.headers, "X-Access-Code": CODE})
    assert r.status_code == 200 and len(r.json()["rows"]) == 4
    submit = {
        "model_type": "alzheimer_classifier",
        "dataset_source": "user_provided",
        "dataset_id": ds["id"],
        "target": "cdr",
    }
    r = client.post("/api/v1/training/submit", json=submit, headers=alice.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "dataset_access_protected"
    r = client.delete(f"{base}/access-code", headers={**alice.headers, "X-Access-Code": CODE})
    assert r.status_code == 200
    assert client.get(f"{base}/preview", headers=alice.headers).status_code == 200
    assert len(_audit(ctx, "dataset.access_code")) == 2


def test_a_registered_version_downloads_encrypted_for_its_caller(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller, trained: Any
) -> None:
    view = register(ctx, alice, trained, access_code=CODE)
    url = f"/api/v1/models/{view.model_id}/download"
    assert client.get(url, headers=bob.headers).status_code == 404
    assert client.get(url, headers=alice.headers).status_code == 403
    r = client.get(url, headers={**alice.headers, "X-Access-Code": CODE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 1 and body["job_id"] == view.id
    model = open_download(body, api_key=alice.key)
    _, result = trained
    assert model.model_bytes == result.model_bytes
    assert len(model.predictor().predict(rows(trained))) == 3


def test_parallel_wrong_codes_are_counted_before_they_are_checked(ctx: Context, alice: Caller) -> None:
    """25 guesses at once: at most max_failed_attempts codes are ever tried, the rest get 423."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from bastion.auth.lockout import LockoutPolicy
    from bastion.auth.principal import Principal
    from bastion.catalog.access import AccessCodeGuard
    from bastion.errors import Forbidden, Locked

    policy = LockoutPolicy(ctx.settings.max_failed_attempts, timedelta(minutes=15))
    guard = AccessCodeGuard(ctx.db, ctx.audit, policy)
    principal = Principal(user_id=alice.user_id, username="alice", role="user", via="api_key")
    tried, lock = [0], threading.Lock()

    def wrong_code() -> None:
        with lock:
            tried[0] += 1
        raise Forbidden("wrong access code", code="wrong_access_code")

    def guess(_: int) -> str:
        try:
            guard.run(principal, "artifact-1", wrong_code, has_code=True)
        except Locked:
            return "locked"
        except Forbidden:
            return "wrong"
        return "opened"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(guess, range(25)))
    assert tried[0] == outcomes.count("wrong") <= ctx.settings.max_failed_attempts
    assert outcomes.count("locked") >= 25 - ctx.settings.max_failed_attempts
    # an unprotected read (no code given) by the same caller is refused while the lock lasts
    with pytest.raises(Locked):
        guard.run(principal, "artifact-1", lambda: "data", has_code=False)
    # and a correct code after the window is cleared works again (the lock is per caller and artifact)
    assert guard.run(principal, "artifact-2", lambda: "data", has_code=True) == "data"
