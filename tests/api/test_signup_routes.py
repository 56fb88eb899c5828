"""Sign-up: off by default, approval or allowed domains, password rules, lockout, no enumeration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion.api.app import CONTEXT_HOOKS, create_app
from bastion.auth import signup as signup_module
from bastion.context import Context, build_context
from tests.conftest import Caller, make_settings

SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def open_ctx(tmp_path: Path, db_url: str) -> Iterator[Context]:
    settings = make_settings(tmp_path, db_url, signup_enabled=True, signup_allowed_domains="trusted.example")
    context = build_context(settings)
    for hook in CONTEXT_HOOKS:
        hook(context)
    yield context
    context.close()


@pytest.fixture
def open_client(open_ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context=open_ctx), raise_server_exceptions=False) as c:
        yield c


def register(client: TestClient, username: str, email: str, password: str = PASSWORD) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = client.post(SIGNUP, json={"username": username, "email": email, "password": password})
    return r.status_code, r.json()


def test_signup_is_off_by_default(client: TestClient) -> None:
    status, body = register(client, "newbie", "newbie@example.org")
    assert status == 403 and body["error"]["code"] == "signup_disabled"


def test_pending_signup_needs_admin_approval(open_client: TestClient, open_ctx: Context) -> None:
    status, _ = register(open_client, "newbie", "newbie@example.org")
    assert status == 202
    login = {"username": "newbie", "password": PASSWORD}
    r = open_client.post(LOGIN, json=login)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"  # pending: as unknown
    admin = open_ctx.accounts.create_user("root", "admin")
    headers = {"X-API-Key": open_ctx.accounts.create_key(admin.id).plaintext}
    page = open_client.get("/api/v1/admin/signups", headers=headers).json()
    assert [p["username"] for p in page["data"]] == ["newbie"] and page["next_cursor"] is None
    assert "password" not in str(page)
    r = open_client.post(f"/api/v1/admin/signups/{page['data'][0]['id']}/approve", headers=headers)
    assert (
        r.status_code == 201 and r.json()["role"] == "user" and r.headers["Location"].endswith(r.json()["id"])
    )
    assert open_client.post(LOGIN, json=login).status_code == 200
    assert open_client.get("/api/v1/admin/signups", headers=headers).json()["data"] == []


def test_allowed_domain_is_active_at_once(open_client: TestClient) -> None:
    assert register(open_client, "trusty", "trusty@trusted.example")[0] == 202
    assert open_client.post(LOGIN, json={"username": "trusty", "password": PASSWORD}).status_code == 200


def test_signup_queue_is_admin_only_and_paginated(
    open_client: TestClient,
    open_ctx: Context,
    make_caller,  # type: ignore[no-untyped-def]
) -> None:
    for i in range(3):
        register(open_client, f"person{i}", f"p{i}@example.org")
    user: Caller = make_caller("user")
    assert open_client.get("/api/v1/admin/signups", headers=user.headers).status_code == 403
    assert open_client.post("/api/v1/admin/signups/person0/approve", headers=user.headers).status_code == 403
    admin: Caller = make_caller("admin")
    first = open_client.get("/api/v1/admin/signups?limit=2", headers=admin.headers).json()
    second = open_client.get(
        f"/api/v1/admin/signups?limit=2&cursor={first['next_cursor']}", headers=admin.headers
    ).json()
    names = [p["username"] for p in first["data"] + second["data"]]
    assert sorted(names) == ["person0", "person1", "person2"] and second["next_cursor"] is None
    assert open_client.get("/api/v1/admin/signups?cursor=!!", headers=admin.headers).status_code == 422
    assert open_client.delete("/api/v1/admin/signups/person1", headers=admin.headers).status_code == 204
    assert open_client.delete("/api/v1/admin/signups/person1", headers=admin.headers).status_code == 404


def test_no_user_enumeration_through_signup(
    open_client: TestClient, open_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taken name, a pending name and a free name get the same answer after the same hashing work."""
    open_ctx.accounts.create_user("existing", "user", password=PASSWORD)
    register(open_client, "waiting", "w@example.org")
    hashes: list[str] = []
    real = signup_module.hash_password
    monkeypatch.setattr(signup_module, "hash_password", lambda pw: hashes.append(pw) or real(pw))
    answers = [
        register(open_client, name, f"{name}@example.org", "another long password")
        for name in ("existing", "waiting", "brandnew")
    ]
    assert answers[0] == answers[1] == answers[2] and answers[0][0] == 202
    assert len(hashes) == 3
    # The taken name's password did not change and the free one is pending.
    assert open_client.post(LOGIN, json={"username": "existing", "password": PASSWORD}).status_code == 200
    r = open_client.post(LOGIN, json={"username": "existing", "password": "another long password"})
    unknown = open_client.post(LOGIN, json={"username": "nobody-at-all", "password": "another long password"})
    assert r.status_code == unknown.status_code == 401 and r.json() == unknown.json()


def test_weak_password_and_bad_fields_are_422(open_client: TestClient) -> None:
    status, body = register(open_client, "weakling", "weak@example.org", "short")
    assert status == 422 and body["error"]["code"] == "weak_password"
    assert register(open_client, "x y", "xy@example.org")[0] == 422
    assert register(open_client, "noemail", "not-an-email")[0] == 422


def test_locked_address_cannot_sign_up(open_client: TestClient) -> None:
    for _ in range(3):  # max_failed_attempts in the test settings
        open_client.post(LOGIN, json={"username": "ghost", "password": "wrong password!!"})
    status, body = register(open_client, "fresh", "fresh@trusted.example")
    assert status == 423, body


def test_signup_is_rate_limited_like_login(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url, signup_enabled=True, login_rate_limit="2/minute")
    context = build_context(settings)
    try:
        with TestClient(create_app(context=context), raise_server_exceptions=False) as c:
            codes = [register(c, f"rl{i}", f"rl{i}@example.org")[0] for i in range(3)]
        assert codes == [202, 202, 429]
    finally:
        context.close()
