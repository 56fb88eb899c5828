"""Signing in and out: the newcomer's API-key path, cookie attributes, logout, disable, expiry, CSRF."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import JWT
from tests.web.conftest import PASSWORD, Dashboard, cookies_of, sign_in

pytestmark = pytest.mark.e2e


def test_newcomer_signs_in_with_the_bootstrap_key_once_then_with_a_password(
    dash: Dashboard, new_page: Any
) -> None:
    page = new_page()
    page.goto("/jobs")
    assert "/login?next=%2Fjobs" in page.url  # no session: the sign-in page, not an error
    page.click("text=First sign-in with an API key")
    page.fill("#api_key", dash.server.keys["user"])
    page.fill("#new_password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("text=Set password and sign in")
    page.wait_for_url(f"{dash.url}/")
    assert "user" in page.inner_text(".who")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["bastion_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert cookies["bastion_refresh"]["httpOnly"]
    # nothing a script can read holds a credential
    assert page.evaluate("document.cookie") == ""
    stored = page.evaluate("JSON.stringify([localStorage, sessionStorage])")
    assert "bst_" not in stored and session["value"] not in stored and "eyJ" not in stored
    # the key path works once: the account now has a password
    other = new_page()
    other.goto("/login")
    other.click("text=First sign-in with an API key")
    other.fill("#api_key", dash.server.keys["user"])
    other.fill("#new_password", PASSWORD + "x")
    other.fill("#confirm", PASSWORD + "x")
    other.click("text=Set password and sign in")
    assert "already has a password" in other.inner_text(".error")
    sign_in(other, "user")
    assert "user" in other.inner_text(".who")


def test_wrong_password_is_refused_and_audited(dash: Dashboard, new_page: Any) -> None:
    dash.add_user("mallory", "user")
    page = new_page()
    page.goto("/login")
    page.fill("#username", "mallory")
    page.fill("#password", "wrong password here")
    page.click("form[action='/login'] button[type=submit]")
    assert "invalid username or password" in page.inner_text(".error")
    assert "bastion_session" not in cookies_of(page)
    rows = dash.api("GET", "/admin/audit?action=auth.login&outcome=denied").json()["data"]
    assert any(r["actor"] == "mallory" for r in rows)


def test_logout_kills_the_cookie(dash: Dashboard, new_page: Any) -> None:
    dash.add_user("leaver", "user")
    page = new_page()
    sign_in(page, "leaver")
    stolen = cookies_of(page)
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login**")
    assert "signed out" in page.inner_text("main")
    # the copied cookies no longer open anything
    r = httpx.get(f"{dash.url}/jobs", cookies=stolen, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_disabling_a_user_ends_their_browser_session(dash: Dashboard, new_page: Any) -> None:
    uid = dash.add_user("suspended", "user")
    page = new_page()
    sign_in(page, "suspended")
    page.goto("/jobs")
    admin = new_page()
    sign_in(admin, "admin")
    admin.goto("/admin/users")
    row = admin.locator("tr", has_text="suspended")
    row.locator("button:has-text('Disable')").click()
    admin.wait_for_selector("tr:has-text('suspended') .badge:has-text('disabled')")
    page.goto("/jobs")
    assert "/login" in page.url
    assert dash.api("GET", f"/admin/users/{uid}").json()["disabled"]


def _token(sid: str, sub: str, typ: str, issued: datetime, ttl: timedelta) -> str:
    claims = {
        "sub": sub,
        "sid": sid,
        "jti": str(uuid.uuid4()),
        "typ": typ,
        "iss": "bastion",
        "aud": "bastion-api",
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
    }
    return jwt.encode(claims, JWT.encode(), algorithm="HS256", headers={"typ": "at+jwt"})


def test_expired_and_idle_sessions_go_to_the_login_page(dash: Dashboard, new_page: Any) -> None:
    dash.add_user("sleepy", "user")
    page = new_page()
    sign_in(page, "sleepy")
    current = jwt.decode(cookies_of(page)["bastion_session"], options={"verify_signature": False})
    now = datetime.now(UTC)
    # idle: a genuine token of this session, but issued 31 minutes ago (idle limit 30)
    idle = _token(current["sid"], current["sub"], "access", now - timedelta(minutes=31), timedelta(hours=1))
    page.context.add_cookies([{"name": "bastion_session", "value": idle, "url": dash.url}])
    page.goto("/federations")
    assert "/login" in page.url and "inactivity" in page.inner_text("main")
    # expired: access expired and no usable refresh token
    gone = _token(current["sid"], current["sub"], "access", now - timedelta(hours=2), timedelta(hours=1))
    page.context.add_cookies([{"name": "bastion_session", "value": gone, "url": dash.url}])
    page.goto("/models")
    assert "/login?next=%2Fmodels" in page.url
    assert page.locator("#username").is_visible()


def test_csrf_from_another_origin_is_refused(dash: Dashboard, new_page: Any) -> None:
    dash.add_user("victim", "user")
    page = new_page()
    sign_in(page, "victim")
    cookies = cookies_of(page)
    page.goto("/jobs/new")
    token = page.get_attribute("meta[name=csrf-token]", "content")
    form = {
        "csrf_token": token,
        "model_type": "alzheimer_classifier",
        "dataset": "builtin:synthetic_test_data",
    }
    # a browser page on another origin posts a form at the dashboard: SameSite=Strict keeps the cookie
    # home, so the request arrives signed out and lands on the sign-in page
    evil = "http://evil.example.test/"
    page.route(
        evil,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form id="f" method="post" action="{dash.url}/jobs"><input name="model_type" '
            'value="alzheimer_classifier"><input name="dataset" value="builtin:synthetic_test_data">'
            '</form><script>document.getElementById("f").submit()</script>',
        ),
    )
    page.goto(evil)
    page.wait_for_url("**/login**")
    # even with the cookie and a valid token, a foreign Origin is refused
    r = httpx.post(
        f"{dash.url}/jobs", data=form, cookies=cookies, headers={"Origin": "http://evil.example.test"}
    )
    assert r.status_code == 403 and "cross-origin" in r.text
    r = httpx.post(f"{dash.url}/jobs", data=form, cookies=cookies, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    # same origin without the token: refused as well
    r = httpx.post(f"{dash.url}/jobs", data={**form, "csrf_token": "x" * 64}, cookies=cookies)
    assert r.status_code == 403 and "CSRF" in r.text
    jobs = dash.api("GET", f"/admin/training/jobs?owner_id={dash.user_id('victim')}").json()["data"]
    assert jobs == []
    # the page's own form works
    r = httpx.post(f"{dash.url}/jobs", data=form, cookies=cookies, headers={"Origin": dash.url})
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")


def test_security_headers_on_pages(dash: Dashboard) -> None:
    r = httpx.get(f"{dash.url}/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    spec = httpx.get(f"{dash.url}/openapi.json").json()
    assert not any(p in spec["paths"] for p in ("/", "/jobs", "/login", "/admin/users"))


def test_own_key_is_shown_once_and_revocable_from_the_account_page(dash: Dashboard, new_page: Any) -> None:
    dash.add_user("selfserve", "viewer")
    page = new_page()
    sign_in(page, "selfserve")
    page.goto("/account")
    assert page.locator("text=this browser").count() == 1  # the current login session is listed
    page.fill("#key-name", "notebook")
    page.click("button:has-text('Create key')")
    key = page.input_value("#new-key")
    assert (
        httpx.get(f"{dash.url}/api/v1/auth/me", headers={"X-API-Key": key}).json()["username"] == "selfserve"
    )
    page.goto("/account")
    assert key not in page.content()
    page.click("button[aria-label='revoke key notebook']")
    page.wait_for_selector("tr:has-text('notebook') .badge:has-text('revoked')")
    # earlier tests' refused credentials all come from 127.0.0.1 and may have locked that address
    # (a 423 would hide the answer this test is about): start this check from a clean count
    r = dash.api("POST", "/admin/lockouts/unlock", json={"address": "127.0.0.1"})
    assert r.status_code == 200, r.text
    assert httpx.get(f"{dash.url}/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 401
