"""Authentication over HTTP: keys, tokens, lockout, rate limits and roles (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion import clock
from bastion.api.app import create_app
from bastion.context import build_context
from bastion.store.base import utcnow
from tests.conftest import Caller, make_settings

ME = "/api/v1/auth/me"


def test_missing_key_is_401_with_stable_code(client: TestClient) -> None:
    r = client.get(ME)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_credentials"


@pytest.mark.parametrize("key", ["bst_nope", "bst_" + "a" * 38, "not-a-key-at-all"])
def test_wrong_key_is_401(client: TestClient, key: str) -> None:
    r = client.get(ME, headers={"X-API-Key": key})
    assert r.status_code == 401
    assert "traceback" not in r.text.lower()


def test_key_accepted_three_ways(client: TestClient, alice: Caller) -> None:
    for kwargs in (
        {"headers": {"X-API-Key": alice.key}},
        {"headers": {"Authorization": f"Bearer {alice.key}"}},
        {"params": {"api_key": alice.key}},
    ):
        r = client.get(ME, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        assert r.json()["username"] == "alice"


def test_revoked_key_stops_working(client: TestClient, alice: Caller) -> None:
    new = client.post("/api/v1/auth/keys", json={"name": "laptop"}, headers=alice.headers).json()
    assert new["key"].startswith("bst_")
    assert client.get(ME, headers={"X-API-Key": new["key"]}).status_code == 200
    assert client.delete(f"/api/v1/auth/keys/{new['id']}", headers=alice.headers).status_code == 200
    r = client.get(ME, headers={"X-API-Key": new["key"]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_revoked"


def test_key_listing_never_shows_the_key(client: TestClient, alice: Caller) -> None:
    listed = client.get("/api/v1/auth/keys", headers=alice.headers).json()["data"]
    assert listed and all("key" not in k and alice.key not in str(k) for k in listed)


def test_expired_key_is_401(client: TestClient, ctx, alice: Caller) -> None:  # type: ignore[no-untyped-def]
    new = ctx.accounts.create_key(alice.user_id, "short", expires_in_days=1)
    assert client.get(ME, headers={"X-API-Key": new.plaintext}).status_code == 200
    from bastion.store.tables import ApiKey

    with ctx.db.session() as s:
        s.get(ApiKey, new.key.id).expires_at = utcnow() - timedelta(seconds=1)
    r = client.get(ME, headers={"X-API-Key": new.plaintext})
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_expired"


def test_foreign_key_revoke_is_404(client: TestClient, alice: Caller, bob: Caller) -> None:
    bobs = client.get("/api/v1/auth/keys", headers=bob.headers).json()["data"][0]
    assert client.delete(f"/api/v1/auth/keys/{bobs['id']}", headers=alice.headers).status_code == 404
    assert client.get(ME, headers=bob.headers).status_code == 200


def test_disabled_user_is_locked_out(client: TestClient, admin: Caller, alice: Caller) -> None:
    r = client.patch(f"/api/v1/admin/users/{alice.user_id}", json={"disabled": True}, headers=admin.headers)
    assert r.status_code == 200
    assert client.get(ME, headers=alice.headers).status_code == 401


def test_login_refresh_logout(client: TestClient, make_caller: Callable[..., Caller]) -> None:
    make_caller("user", "carol", password="a long enough password")
    r = client.post("/api/v1/auth/login", json={"username": "carol", "password": "a long enough password"})
    assert r.status_code == 200, r.text
    pair = r.json()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert client.get(ME, headers=bearer).json()["authenticated_via"] == "jwt"

    # the refresh token is not an access token
    assert client.get(ME, headers={"Authorization": f"Bearer {pair['refresh_token']}"}).status_code == 401

    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    assert rotated["refresh_token"] != pair["refresh_token"]
    # replaying the old refresh token revokes the whole session
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "token_reused"
    assert client.get(ME, headers={"Authorization": f"Bearer {rotated['access_token']}"}).status_code == 401


def test_logout_revokes_access_and_refresh(client: TestClient, make_caller: Callable[..., Caller]) -> None:
    make_caller("user", "dave", password="a long enough password")
    pair = client.post(
        "/api/v1/auth/login", json={"username": "dave", "password": "a long enough password"}
    ).json()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (
        client.post(
            "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}, headers=bearer
        ).status_code
        == 200
    )
    assert client.get(ME, headers=bearer).status_code == 401
    assert (
        client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    )


def test_lockout_after_failures_and_release_after_window(
    client: TestClient, make_caller: Callable[..., Caller]
) -> None:
    make_caller("user", "erin", password="the right password!")
    bad = {"username": "erin", "password": "the wrong password"}
    codes = [client.post("/api/v1/auth/login", json=bad).status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    locked = client.post("/api/v1/auth/login", json={"username": "erin", "password": "the right password!"})
    assert locked.status_code == 423
    assert int(locked.headers["Retry-After"]) > 0
    # after the window the right password works again
    with clock.use(clock.ManualClock(utcnow() + timedelta(minutes=16))):
        ok = client.post("/api/v1/auth/login", json={"username": "erin", "password": "the right password!"})
    assert ok.status_code == 200


def test_source_address_lockout_on_bad_keys(client: TestClient, alice: Caller) -> None:
    for _ in range(3):
        assert client.get(ME, headers={"X-API-Key": "bst_" + "x" * 38}).status_code == 401
    r = client.get(ME, headers={"X-API-Key": "bst_" + "y" * 38})
    assert r.status_code == 423, "the address is locked for further guesses"
    assert client.get(ME, headers=alice.headers).status_code == 200, "a valid key is never refused for it"


def test_lockout_and_failures_are_audited(client: TestClient, ctx) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bastion.store.tables import AuditEvent

    for _ in range(3):
        client.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope nope nope"})
    with ctx.db.session() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(["auth.lockout", "auth.login"]))
        ).all()
    lockouts = [r for r in rows if r.action == "auth.lockout"]
    assert {r.target_id for r in lockouts} == {"ip", "user", "pair"}
    assert sum(r.action == "auth.login" and r.outcome == "denied" for r in rows) == 3
    assert all("nope nope nope" not in r.details for r in rows)


def test_rate_limit_gives_429_with_retry_after(tmp_path: Path, db_url: str) -> None:
    ctx = build_context(make_settings(tmp_path, db_url, rate_limit="5/minute"))
    user = ctx.accounts.create_user("rl", "user")
    key = ctx.accounts.create_key(user.id).plaintext
    with TestClient(create_app(context=ctx)) as c:
        codes = [c.get(ME, headers={"X-API-Key": key}).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        r = c.get(ME, headers={"X-API-Key": key})
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1


def test_rate_limit_shared_through_redis(tmp_path: Path) -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis unreachable on 127.0.0.1:6379: {exc}")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    settings = make_settings(tmp_path, url, rate_limit="4/minute", redis_url="redis://127.0.0.1:6379/15")
    ctx_a = build_context(settings)
    user = ctx_a.accounts.create_user("shared", "user")
    key = ctx_a.accounts.create_key(user.id).plaintext
    ctx_b = build_context(settings)  # a second replica over the same database and Redis
    with TestClient(create_app(context=ctx_a)) as a, TestClient(create_app(context=ctx_b)) as b:
        codes = [(a if i % 2 else b).get(ME, headers={"X-API-Key": key}).status_code for i in range(6)]
    assert codes.count(200) == 4 and codes.count(429) == 2


def test_viewer_and_user_get_403_on_admin_routes(client: TestClient, viewer: Caller, alice: Caller) -> None:
    for caller in (viewer, alice):
        r = client.get("/api/v1/admin/users", headers=caller.headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_role"


def test_admin_manages_users(client: TestClient, admin: Caller) -> None:
    r = client.post(
        "/api/v1/admin/users", json={"username": "frank", "role": "viewer"}, headers=admin.headers
    )
    assert r.status_code == 201 and r.json()["role"] == "viewer"
    dup = client.post("/api/v1/admin/users", json={"username": "frank"}, headers=admin.headers)
    assert dup.status_code == 409
    bad = client.post("/api/v1/admin/users", json={"username": "x", "role": "god"}, headers=admin.headers)
    assert bad.status_code == 422
    assert (
        client.patch("/api/v1/admin/users/nobody", json={"disabled": True}, headers=admin.headers).status_code
        == 404
    )
    names = [u["username"] for u in client.get("/api/v1/admin/users", headers=admin.headers).json()["data"]]
    assert "frank" in names
