"""Sign-up: off by default, approval or allowed domains, password rules, lockout, no enumeration."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion.api.app import create_app
from bastion.auth import signup as signup_module
from bastion.auth.signup import SignupPolicy
from bastion.config import Settings
from bastion.context import Context, build_context
from tests.conftest import Caller, make_settings

SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """This module's ``ctx`` and ``client`` (tests/conftest.py): sign-up on, one trusted domain."""
    return make_settings(tmp_path, db_url, signup_enabled=True, signup_allowed_domains="trusted.example")


def register(client: TestClient, username: str, email: str, password: str = PASSWORD) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = client.post(SIGNUP, json={"username": username, "email": email, "password": password})
    return r.status_code, r.json()


def test_signup_is_off_by_default(client: TestClient, ctx: Context, tmp_path: Path, db_url: str) -> None:
    default = make_settings(tmp_path, db_url)
    assert default.signup_enabled is False
    ctx.services.signups.policy = SignupPolicy.parse(default.signup_enabled, default.signup_allowed_domains)
    status, body = register(client, "newbie", "newbie@example.org")
    assert status == 403 and body["error"]["code"] == "signup_disabled"


def test_pending_signup_needs_admin_approval(client: TestClient, ctx: Context) -> None:
    status, _ = register(client, "newbie", "newbie@example.org")
    assert status == 202
    login = {"username": "newbie", "password": PASSWORD}
    r = client.post(LOGIN, json=login)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"  # pending: as unknown
    admin = ctx.accounts.create_user("root", "admin")
    headers = {"X-API-Key": ctx.accounts.create_key(admin.id).plaintext}
    page = client.get("/api/v1/admin/signups", headers=headers).json()
    assert [p["username"] for p in page["data"]] == ["newbie"] and page["next_cursor"] is None
    assert "password" not in str(page)
    r = client.post(f"/api/v1/admin/signups/{page['data'][0]['id']}/approve", headers=headers)
    assert (
        r.status_code == 201 and r.json()["role"] == "user" and r.headers["Location"].endswith(r.json()["id"])
    )
    assert client.post(LOGIN, json=login).status_code == 200
    assert client.get("/api/v1/admin/signups", headers=headers).json()["data"] == []


def test_allowed_domain_is_active_at_once(client: TestClient) -> None:
    assert register(client, "trusty", "trusty@trusted.example")[0] == 202
    assert client.post(LOGIN, json={"username": "trusty", "password": PASSWORD}).status_code == 200


def test_signup_queue_is_admin_only_and_paginated(
    client: TestClient,
    ctx: Context,
    make_caller,  # type: ignore[no-untyped-def]
) -> None:
    for i in range(3):
        register(client, f"person{i}", f"p{i}@example.org")
    user: Caller = make_caller("user")
    assert client.get("/api/v1/admin/signups", headers=user.headers).status_code == 403
    assert client.post("/api/v1/admin/signups/person0/approve", headers=user.headers).status_code == 403
    admin: Caller = make_caller("admin")
    first = client.get("/api/v1/admin/signups?limit=2", headers=admin.headers).json()
    second = client.get(
        f"/api/v1/admin/signups?limit=2&cursor={first['next_cursor']}", headers=admin.headers
    ).json()
    names = [p["username"] for p in first["data"] + second["data"]]
    assert sorted(names) == ["person0", "person1", "person2"] and second["next_cursor"] is None
    assert client.get("/api/v1/admin/signups?cursor=!!", headers=admin.headers).status_code == 422
    assert client.delete("/api/v1/admin/signups/person1", headers=admin.headers).status_code == 204
    assert client.delete("/api/v1/admin/signups/person1", headers=admin.headers).status_code == 404


def test_no_user_enumeration_through_signup(
    client: TestClient, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taken name, a pending name and a free name get the same answer after the same hashing work."""
    ctx.accounts.create_user("existing", "user", password=PASSWORD)
    register(client, "waiting", "w@example.org")
    hashes: list[str] = []
    real = signup_module.hash_password
    monkeypatch.setattr(signup_module, "hash_password", lambda pw: hashes.append(pw) or real(pw))
    answers = [
        register(client, name, f"{name}@example.org", "another long password")
        for name in ("existing", "waiting", "brandnew")
    ]
    assert answers[0] == answers[1] == answers[2] and answers[0][0] == 202
    assert len(hashes) == 3
    # The taken name's password did not change and the free one is pending.
    assert client.post(LOGIN, json={"username": "existing", "password": PASSWORD}).status_code == 200
    r = client.post(LOGIN, json={"username": "existing", "password": "another long password"})
    unknown = client.post(LOGIN, json={"username": "nobody-at-all", "password": "another long password"})
    assert r.status_code == unknown.status_code == 401 and r.json() == unknown.json()


def test_weak_password_and_bad_fields_are_422(client: TestClient) -> None:
    status, body = register(client, "weakling", "weak@example.org", "short")
    assert status == 422 and body["error"]["code"] == "weak_password"
    assert register(client, "x y", "xy@example.org")[0] == 422
    assert register(client, "noemail", "not-an-email")[0] == 422


def test_locked_address_cannot_sign_up(client: TestClient) -> None:
    for _ in range(3):  # max_failed_attempts in the test settings
        client.post(LOGIN, json={"username": "ghost", "password": "wrong password!!"})
    status, body = register(client, "fresh", "fresh@trusted.example")
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
