"""Sessions end when they should; the lockout is counted first, per account and address, never per address alone.

Each test reproduces one of the penetration test's items 6-9 (issue 11), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.auth.service import progressive_delay
from bastion.cli.client_common import client_failure
from bastion.client.errors import from_response
from bastion.client.sdk import BastionClient
from bastion.context import Context
from bastion.errors import Locked, Unauthorized
from bastion.store.tables import AuditEvent
from tests.conftest import Caller

ME = "/api/v1/auth/me"
LOGIN = "/api/v1/auth/login"
PASSWORD = "a long enough password"


def _login(client: TestClient, name: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post(LOGIN, json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _still_works(client: TestClient, pair: dict[str, str]) -> tuple[int, int]:
    me = client.get(ME, headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
    return me, refreshed


def test_password_change_ends_every_session(
    client: TestClient, admin: Caller, make_caller: Callable[..., Caller]
) -> None:
    user = make_caller("user", "dana", password=PASSWORD)
    pair = _login(client, "dana")
    r = client.patch(
        f"/api/v1/admin/users/{user.user_id}",
        json={"password": "another good password"},
        headers=admin.headers,
    )
    assert r.status_code == 200
    assert _still_works(client, pair) == (401, 401)
    assert client.get(ME, headers=user.headers).status_code == 200, "API keys are not sessions"


def test_disable_ends_sessions_and_enable_does_not_revive_them(
    client: TestClient, admin: Caller, make_caller: Callable[..., Caller]
) -> None:
    user = make_caller("user", "fred", password=PASSWORD)
    pair = _login(client, "fred")
    url = f"/api/v1/admin/users/{user.user_id}"
    assert client.patch(url, json={"disabled": True}, headers=admin.headers).status_code == 200
    assert client.patch(url, json={"disabled": False}, headers=admin.headers).status_code == 200
    assert _still_works(client, pair) == (401, 401)
    assert _still_works(client, _login(client, "fred")) == (200, 200), "a new login works"


def test_parallel_guesses_check_at_most_the_configured_number(
    ctx: Context, make_caller: Callable[..., Caller]
) -> None:
    make_caller("user", "gina", password=PASSWORD)

    def guess(i: int) -> str:
        try:
            ctx.auth.login("gina", f"wrong guess {i}", "203.0.113.5")
        except Unauthorized:
            return "401"
        except Locked:
            return "423"
        return "200"

    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(guess, range(25)))
    checked = answers.count("401")
    assert checked <= ctx.settings.max_failed_attempts, answers
    assert answers.count("423") == 25 - checked
    with pytest.raises(Locked):
        ctx.auth.login("gina", PASSWORD, "203.0.113.5")


def test_a_shared_address_does_not_lock_out_its_other_users(
    client: TestClient, make_caller: Callable[..., Caller], alice: Caller
) -> None:
    make_caller("user", "hank", password=PASSWORD)
    make_caller("user", "ivy", password=PASSWORD)
    for _ in range(3):
        assert client.post(LOGIN, json={"username": "hank", "password": "typo typo typo"}).status_code == 401
    assert client.post(LOGIN, json={"username": "hank", "password": PASSWORD}).status_code == 423
    _login(client, "ivy")  # same address (the test client's), another account
    for _ in range(4):
        client.get(ME, headers={"X-API-Key": "bst_" + "z" * 38})
    assert client.get(ME, headers=alice.headers).status_code == 200, "a valid key passes a locked address"


def test_failures_past_the_threshold_slow_the_address_down(ctx: Context) -> None:
    assert progressive_delay(2, 3) == 0
    assert 0 < progressive_delay(3, 3) < progressive_delay(4, 3) <= progressive_delay(30, 3) <= 4
    delays = []
    for _ in range(5):
        try:
            ctx.auth.authenticate("bst_" + "q" * 38, "198.51.100.20")
        except Unauthorized as exc:
            delays.append(exc.slow_down)
        except Locked:
            delays.append(-1.0)
    assert delays[0] == 0 and delays[2] > 0 and delays[3:] == [-1.0, -1.0]


def test_admin_and_cli_can_lift_a_lockout(
    client: TestClient, admin: Caller, make_caller: Callable[..., Caller], ctx: Context
) -> None:
    make_caller("user", "jack", password=PASSWORD)
    for _ in range(4):
        client.post(LOGIN, json={"username": "jack", "password": "nope nope nope"})
    assert client.post(LOGIN, json={"username": "jack", "password": PASSWORD}).status_code == 423
    r = client.post("/api/v1/admin/lockouts/unlock", json={"username": "jack"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["cleared"] >= 2
    _login(client, "jack")
    for _ in range(4):
        client.post(LOGIN, json={"username": "jack", "password": "nope nope nope"})
    assert BastionClient(api_key=admin.key, http=client).unlock(username="jack") >= 2, "the SDK's unlock"
    _login(client, "jack")
    assert client.post("/api/v1/admin/lockouts/unlock", json={}, headers=admin.headers).status_code == 422
    user = make_caller("user")
    assert (
        client.post("/api/v1/admin/lockouts/unlock", json={"username": "x"}, headers=user.headers).status_code
        == 403
    )


def test_cli_423_message_shows_when_to_retry(capsys: pytest.CaptureFixture[str]) -> None:
    body = {"error": {"code": "locked", "message": "too many failed attempts; try again later"}}
    exc = from_response(423, body, {"retry-after": "754"})
    client_failure(exc, as_json=False)
    assert "retry in 12 min 34 s" in capsys.readouterr().err
    client_failure(exc, as_json=True)
    assert json.loads(capsys.readouterr().out)["error"]["retry_after"] == 754


def test_unknown_usernames_are_kept_as_a_keyed_hash(client: TestClient, ctx: Context) -> None:
    typed = "my secret password in the wrong field"
    for _ in range(4):
        client.post(LOGIN, json={"username": typed, "password": "x" * 12})
    with ctx.db.session() as s:
        rows = s.scalars(select(AuditEvent)).all()
    assert rows and all(typed not in (r.actor or "") and typed not in r.details for r in rows)
    actors = {r.actor for r in rows if r.action in ("auth.login", "auth.lockout")}
    assert len(actors) == 1 and next(iter(actors)).startswith("unknown:")
