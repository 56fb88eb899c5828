"""Single sign-on against a real OpenID provider (node-oidc-provider on 127.0.0.1), with the attacks.

The provider (tests/oidc/provider.mjs) runs once per session; every login drives the whole code flow
without a browser: Bastion's start route, the provider's authorization endpoint and interactions
(login and consent), Bastion's callback, then the one-time hand-off for a token pair.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select as sql_select

from bastion.api.app import create_app
from bastion.context import Context, build_context
from bastion.errors import BastionError
from bastion.store.tables import AuditEvent, OidcIdentity, User
from bastion.wiring import install_services
from tests.cli.test_accounts_cli import cli_json
from tests.conftest import make_settings
from tests.oidc_provider import CALLBACK, CLIENT_ID, CLIENT_SECRET, OpenIdProvider, at_provider

SsoApp = tuple[TestClient, Context]


@pytest.fixture
def make_app(tmp_path: Path, db_url: str, oidc_provider: OpenIdProvider) -> Iterator[Callable[..., SsoApp]]:
    opened: list[tuple[TestClient, Context]] = []

    def make(**overrides: Any) -> SsoApp:
        values: dict[str, Any] = {
            "oidc_issuer": oidc_provider.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_redirect_uri": CALLBACK,
            "oidc_scopes": "openid email profile groups",
            "oidc_allow_provisioning": True,
            "oidc_role_map": "bastion-admins=admin,researchers=user",
        }
        values.update(overrides)
        context = build_context(make_settings(tmp_path / f"app{len(opened)}", db_url, **values))
        install_services(context)
        client = TestClient(create_app(context=context), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, context))
        return client, context

    yield make
    for client, _ in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def app(make_app: Callable[..., SsoApp]) -> SsoApp:
    return make_app()


def start(client: TestClient, return_to: str = "/dashboard") -> str:
    r = client.get("/api/v1/auth/sso/start", params={"return_to": return_to}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


def callback(client: TestClient, url: str) -> httpx.Response:
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def sso_login(client: TestClient, account: str = "alice", return_to: str = "/dashboard") -> dict[str, Any]:
    r = callback(client, at_provider(start(client, return_to), account))
    assert r.status_code == 303, r.text
    target, _, fragment = r.headers["location"].partition("#")
    assert target == return_to and fragment.startswith("sso_code=")
    tokens = client.post("/api/v1/auth/sso/exchange", json={"code": fragment.removeprefix("sso_code=")})
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


def me(client: TestClient, access_token: str) -> dict[str, Any]:
    r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    return code


# -- it works --------------------------------------------------------------------------------------


def test_login_provisions_maps_groups_and_is_an_ordinary_session(app: SsoApp) -> None:
    client, ctx = app
    tokens = sso_login(client, "alice")
    who = me(client, tokens["access_token"])
    assert who["role"] == "admin" and who["authenticated_via"] == "jwt"  # bastion-admins -> admin
    again = sso_login(client, "alice")
    assert me(client, again["access_token"])["user_id"] == who["user_id"]  # linked by (iss, sub)
    with ctx.db.session() as s:
        links = s.scalars(sql_select(OidcIdentity)).all()
        assert [(link.subject, link.user_id) for link in links] == [("alice", who["user_id"])]
        user = s.get(User, who["user_id"])
        assert user is not None and user.email == "alice@hospital.example" and user.password_hash is None
        logins = [e for e in s.scalars(sql_select(AuditEvent)) if e.action == "auth.login"]
        assert len(logins) == 2
    # The ordinary session machinery: refresh rotation, reuse detection, logout.
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401 and error_code(reused) == "token_reused"
    headers = {"Authorization": f"Bearer {again['access_token']}"}
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 200
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_groups_claim_maps_to_user_role(app: SsoApp) -> None:
    client, _ = app
    assert me(client, sso_login(client, "carol")["access_token"])["role"] == "user"


def test_sso_info_and_not_configured(app: SsoApp, client: TestClient) -> None:
    sso_client, _ = app
    info = sso_client.get("/api/v1/auth/sso").json()
    assert info == {"enabled": True, "login_path": "/api/v1/auth/sso/start?return_to=/"}
    assert client.get("/api/v1/auth/sso").json()["enabled"] is False  # the plain app: no issuer set
    r = client.get("/api/v1/auth/sso/start", follow_redirects=False)
    assert r.status_code == 404 and error_code(r) == "sso_not_configured"


def test_cli_handoff_polls_for_a_one_time_session(app: SsoApp) -> None:
    client, _ = app
    started = client.post("/api/v1/auth/sso/cli")
    assert started.status_code == 201
    body = started.json()
    poll = {"poll_token": body["poll_token"]}
    pending = client.post("/api/v1/auth/sso/cli/poll", json=poll)
    assert pending.status_code == 409 and error_code(pending) == "authorization_pending"
    done = callback(client, at_provider(body["authorization_url"], "carol"))
    assert done.status_code == 200 and "return to your terminal" in done.text
    tokens = client.post("/api/v1/auth/sso/cli/poll", json=poll)
    assert tokens.status_code == 200 and me(client, tokens.json()["access_token"])["role"] == "user"
    again = client.post("/api/v1/auth/sso/cli/poll", json=poll)
    assert again.status_code == 400 and error_code(again) == "sso_poll_invalid"


def test_signing_key_rotated_mid_test(app: SsoApp, oidc_provider: OpenIdProvider) -> None:
    client, ctx = app
    sso_login(client, "carol")
    old = {k.kid for k in ctx.services.sso.provider.keys().keys}
    new_kid = oidc_provider.rotate()
    assert new_kid not in old
    tokens = sso_login(client, "carol")  # unknown kid: the JWKS is fetched again
    assert me(client, tokens["access_token"])["role"] == "user"
    assert new_kid in {k.kid for k in ctx.services.sso.provider.keys().keys}


# -- attacks ---------------------------------------------------------------------------------------


def test_state_and_code_never_reach_the_request_log() -> None:
    from bastion.logs import redact_text

    line = redact_text("code=abc123&state=s3cr3t-state&iss=http%3A%2F%2Fidp&session_state=x")
    assert "abc123" not in line and "s3cr3t-state" not in line and "iss=http" in line


def test_wrong_state_is_refused(app: SsoApp) -> None:
    client, _ = app
    url = at_provider(start(client), "alice")
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"state": "forged-state-value"}
    r = client.get(f"{parts.path}?{urlencode(query)}", follow_redirects=False)
    assert r.status_code == 400 and error_code(r) == "sso_state_invalid"


def test_replayed_code_is_refused(app: SsoApp) -> None:
    client, _ = app
    url = at_provider(start(client), "alice")
    assert callback(client, url).status_code == 303
    replay = callback(client, url)  # the same state and code again
    assert replay.status_code == 400 and error_code(replay) == "sso_state_invalid"
    # The used code under a fresh, valid state: the provider refuses it.
    fresh_state = parse_qs(urlsplit(at_provider(start(client), "alice")).query)["state"][0]
    old_code = parse_qs(urlsplit(url).query)["code"][0]
    r = client.get(
        "/api/v1/auth/sso/callback", params={"code": old_code, "state": fresh_state}, follow_redirects=False
    )
    assert r.status_code == 400 and error_code(r) == "sso_code_rejected"


def test_wrong_nonce_is_refused(app: SsoApp) -> None:
    client, _ = app
    url = at_provider(start(client), "alice", nonce="an-attackers-nonce")
    r = callback(client, url)
    assert r.status_code == 400 and error_code(r) == "sso_id_token_invalid"
    assert r.json()["error"]["reason"] == "nonce"


def test_handoff_code_is_single_use(app: SsoApp) -> None:
    client, _ = app
    r = callback(client, at_provider(start(client), "alice"))
    code = r.headers["location"].split("#sso_code=")[1]
    assert client.post("/api/v1/auth/sso/exchange", json={"code": code}).status_code == 200
    again = client.post("/api/v1/auth/sso/exchange", json={"code": code})
    assert again.status_code == 400 and error_code(again) == "sso_code_invalid"


def _claims(provider: OpenIdProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": provider.issuer,
        "sub": "alice",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
    }
    return base | changes


def _reason(ctx: Context, token: str) -> str:
    with pytest.raises(BastionError) as info:
        ctx.services.sso.provider.verify_id_token(token, "n-1")
    assert info.value.code == "sso_id_token_invalid"
    reason: str = info.value.details["reason"]
    return reason


def test_forged_and_misaddressed_tokens_are_refused(app: SsoApp, oidc_provider: OpenIdProvider) -> None:
    """Tokens the provider's real key signed but for the wrong time/party, and tokens it never signed."""
    _, ctx = app
    verifier = ctx.services.sso.provider
    good = oidc_provider.sign(_claims(oidc_provider))
    assert verifier.verify_id_token(good, "n-1")["sub"] == "alice"  # the control: the real key passes
    now = int(time.time())
    assert _reason(ctx, oidc_provider.sign(_claims(oidc_provider, exp=now - 600, iat=now - 900))) == "expired"
    assert _reason(ctx, oidc_provider.sign(_claims(oidc_provider, aud="another-client"))) == "audience"
    assert _reason(ctx, oidc_provider.sign(_claims(oidc_provider, iss="https://evil.example"))) == "issuer"
    assert _reason(ctx, oidc_provider.sign(_claims(oidc_provider, iat=now + 3600))) == "issued in the future"
    # Signed by another key under the provider's current kid, and under an unknown kid.
    current_kid = verifier.keys().keys[-1].kid
    other = RSAKey.generate_key(2048)
    forged = jwt.encode({"alg": "RS256", "kid": current_kid}, _claims(oidc_provider), other)
    assert _reason(ctx, forged) == "bad_signature"
    unknown = jwt.encode({"alg": "RS256", "kid": "attacker"}, _claims(oidc_provider), other)
    assert _reason(ctx, unknown) == "unknown signing key"
    # alg: none, and HS256 keyed with something public.
    segment = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()  # noqa: E731
    unsigned = f"{segment({'alg': 'none', 'kid': current_kid})}.{segment(_claims(oidc_provider))}."
    assert _reason(ctx, unsigned) == "unsupported_algorithm"


def test_unverified_email_never_takes_over_an_account(make_app: Callable[..., SsoApp]) -> None:
    client, ctx = make_app()
    victim = ctx.accounts.create_user("victim", "admin", email="victim@hospital.example")
    tokens = sso_login(client, "mallory")  # the provider says email victim@..., email_verified false
    who = me(client, tokens["access_token"])
    assert who["user_id"] != victim.id and who["username"] != "victim" and who["role"] == "user"
    with ctx.db.session() as s:
        assert s.scalar(sql_select(OidcIdentity).where(OidcIdentity.user_id == victim.id)) is None
        assert s.get(User, who["user_id"]).email is None  # type: ignore[union-attr]
    # Without provisioning an unknown subject gets nothing at all.
    closed, _ = make_app(oidc_allow_provisioning=False)  # the same database: victim still there
    with ctx.db.session() as s:
        s.query(OidcIdentity).delete()  # mallory is a stranger again
    r = callback(closed, at_provider(start(closed), "mallory"))
    assert r.status_code == 403 and error_code(r) == "sso_no_account"


def test_signed_in_user_links_an_identity_and_nobody_else_can(
    make_app: Callable[..., SsoApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bastion.cli.main import app as cli
    from bastion.client import BastionClient
    from bastion.client import sdk as sdk_module

    client, ctx = make_app(oidc_allow_provisioning=False)
    alice = ctx.accounts.create_user("alice-pw", "user", password="correct horse battery staple")
    key = ctx.accounts.create_key(alice.id).plaintext
    assert client.post("/api/v1/auth/sso/link").status_code == 401
    monkeypatch.setattr(
        sdk_module,
        "BastionClient",
        lambda url=None, api_key=None, verify=None: BastionClient(api_key=key, http=client),
    )
    started = CliRunner().invoke(cli, ["sso-link", "--json"])
    assert started.exit_code == 0, started.output
    link = cli_json(started.stdout)["authorization_url"]
    r = callback(client, at_provider(link, "mallory"))
    assert r.status_code == 303 and r.headers["location"] == "/#sso_linked=1"
    assert me(client, sso_login(client, "mallory")["access_token"])["user_id"] == alice.id
    bob = ctx.accounts.create_user("bob-pw", "user")
    bob_key = ctx.accounts.create_key(bob.id).plaintext
    link = client.post("/api/v1/auth/sso/link", headers={"X-API-Key": bob_key}).json()["authorization_url"]
    taken = callback(client, at_provider(link, "mallory"))
    assert taken.status_code == 409 and error_code(taken) == "sso_identity_taken"


@pytest.mark.parametrize(
    "return_to",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "/ok\r\nX: y"],
)
def test_open_redirect_through_return_to_is_refused(app: SsoApp, return_to: str) -> None:
    client, _ = app
    r = client.get("/api/v1/auth/sso/start", params={"return_to": return_to}, follow_redirects=False)
    assert r.status_code == 400 and error_code(r) == "sso_bad_return_to"


def test_relative_return_to_survives_the_round_trip(app: SsoApp) -> None:
    client, _ = app
    sso_login(client, "carol", return_to="/models?page=2")


# -- the SDK and the CLI ---------------------------------------------------------------------------


def test_sdk_login_sso_polls_until_the_browser_is_done(app: SsoApp) -> None:
    from bastion.client import BastionClient

    client, _ = app
    sdk = BastionClient(http=client)
    assert sdk.sso_info()["enabled"] is True
    seen: list[str] = []

    def browser(url: str) -> None:  # the person signs in while the SDK waits
        seen.append(url)
        assert callback(client, at_provider(url, "carol")).status_code == 200

    tokens = sdk.login_sso(browser, interval=0.05)
    assert seen and me(client, tokens["access_token"])["role"] == "user"


def test_cli_login_sso_json(app: SsoApp, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bastion.cli.main import app as cli
    from bastion.client import BastionClient
    from bastion.client import sdk as sdk_module

    client, _ = app

    class Browsing(BastionClient):
        """The real SDK; the person finishes the browser sign-in right after the URL is issued."""

        def sso_cli_start(self) -> dict[str, Any]:
            started = super().sso_cli_start()
            assert callback(client, at_provider(started["authorization_url"], "alice")).status_code == 200
            return started

    monkeypatch.setattr(
        sdk_module, "BastionClient", lambda url=None, api_key=None, verify=None: Browsing(http=client)
    )
    result = CliRunner().invoke(cli, ["login", "--sso", "--json"])
    assert result.exit_code == 0, result.output
    tokens = cli_json(result.stdout)
    assert me(client, tokens["access_token"])["role"] == "admin"
    # Not configured: a clean error under --json, no traceback.
    monkeypatch.setattr(
        sdk_module, "BastionClient", lambda url=None, api_key=None, verify=None: BastionClient(http=client)
    )
    client.app.state.ctx.services.sso = None
    failed = CliRunner().invoke(cli, ["login", "--sso", "--json"])
    assert failed.exit_code == 1 and cli_json(failed.stdout)["error"]["code"] == "sso_not_configured"


def test_dashboard_sign_in_with_sso_opens_a_cookie_session(app: SsoApp, client: TestClient) -> None:
    """The login page's button: provider round trip, the fragment's code posted once, cookies set."""
    sso, _ = app
    assert 'href="/login/sso?next=/jobs"' in sso.get("/login", params={"next": "/jobs"}).text
    assert "Sign in with SSO" not in client.get("/login").text  # not configured: no button
    to_start = sso.get("/login/sso", params={"next": "/jobs"}, follow_redirects=False)
    assert to_start.status_code == 303
    to_provider = sso.get(to_start.headers["location"], follow_redirects=False)
    back = callback(sso, at_provider(to_provider.headers["location"], "alice"))
    target, _, fragment = back.headers["location"].partition("#")
    assert target == "/login/sso/done?next=%2Fjobs" and fragment.startswith("sso_code=")
    done = sso.get(target)
    found = re.search(r'name="login_csrf" value="([^"]+)"', done.text)
    assert done.status_code == 200 and found and "data-sso-finish" in done.text
    form = {"login_csrf": found.group(1), "next": "/jobs", "code": fragment.removeprefix("sso_code=")}
    signed = sso.post("/login/sso", data=form, follow_redirects=False)
    assert (signed.status_code, signed.headers["location"]) == (303, "/jobs")
    assert sso.cookies.get("bastion_session") and sso.cookies.get("bastion_refresh")
    jobs = sso.get("/jobs", follow_redirects=False)
    assert jobs.status_code == 200 and "alice" in jobs.text

    sso.cookies.delete("bastion_session")
    sso.cookies.delete("bastion_refresh")
    replayed = sso.post("/login/sso", data=form, follow_redirects=False)
    assert replayed.status_code == 400 and "expired SSO code" in replayed.text
    foreign = sso.post("/login/sso", data={**form, "next": "https://evil.example/"}, follow_redirects=False)
    assert foreign.status_code == 400  # the used code is refused before any redirect is considered
    assert (
        sso.get("/login/sso", params={"next": "//evil.example"}, follow_redirects=False)
        .headers["location"]
        .endswith("return_to=/login/sso/done%3Fnext%3D%252F")
    )  # an off-site next falls back to /


@pytest.mark.e2e
def test_cli_signs_in_to_a_real_server_through_sso(
    oidc_provider: OpenIdProvider, server_factory: Callable[..., Any]
) -> None:
    """`bastion serve` configured from the environment; `bastion login --sso` in its own process."""
    server = oidc_provider.start_server(server_factory)
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.cli.main",
            "login",
            "--sso",
            "--json",
            "--url",
            server.url,
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server.env,
    )
    try:
        assert cli.stderr is not None
        link = ""
        for line in cli.stderr:  # blocks until the CLI prints the URL (or exits: EOF)
            if line.strip().startswith("http"):
                link = line.strip()
                break
        assert link.startswith(oidc_provider.issuer), (link, cli.poll())
        landed = httpx.get(at_provider(link, "carol", until=oidc_provider.server_callback))
        assert landed.status_code == 200 and "return to your terminal" in landed.text
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    tokens = json.loads(out)
    who = httpx.get(
        server.url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert who.status_code == 200 and who.json()["username"] == "carol" and who.json()["role"] == "user"
