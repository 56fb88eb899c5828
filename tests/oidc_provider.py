"""The real OpenID provider the SSO tests sign in against (node-oidc-provider, tests/oidc/provider.mjs,
run with the machine's Node.js), shared by the API, CLI and browser tests; and the test playing the
browser at it."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import REPO, free_port

CLIENT_ID = "bastion-test"
CLIENT_SECRET = "bastion-test-secret-" + "s" * 24
CALLBACK = "http://testserver/api/v1/auth/sso/callback"
OIDC_DIR = REPO / "tests" / "oidc"


@dataclass
class OpenIdProvider:
    issuer: str
    proc: subprocess.Popen[str]
    server_port: int  # a real `bastion serve` on this port may use the client too (e2e test)

    @property
    def server_callback(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/api/v1/auth/sso/callback"

    def start_server(self, server_factory: Callable[..., Any]) -> Any:
        """A real `bastion serve` configured for this provider from the environment, started on the
        one port whose callback the provider allows."""
        server = server_factory(
            BASTION_OIDC_ISSUER=self.issuer,
            BASTION_OIDC_CLIENT_ID=CLIENT_ID,
            BASTION_OIDC_CLIENT_SECRET=CLIENT_SECRET,
            BASTION_OIDC_REDIRECT_URI=self.server_callback,
            BASTION_OIDC_SCOPES="openid email profile groups",
            BASTION_OIDC_ALLOW_PROVISIONING="true",
            BASTION_OIDC_ROLE_MAP="researchers=user,bastion-admins=admin",
        )
        server.port = self.server_port
        return server.start()

    def rotate(self) -> str:
        kid: str = httpx.post(self.issuer + "/test/rotate").json()["kid"]
        return kid

    def sign(self, claims: dict[str, Any]) -> str:
        token: str = httpx.post(self.issuer + "/test/sign", json=claims).json()["token"]
        return token


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OpenIdProvider]:
    node = shutil.which("node")
    assert node, "Node.js is required for the SSO tests (the machine's `node`)"
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(["make", "-C", str(REPO), "oidc-provider"], check=True)
    port, server_port = free_port(), free_port()
    callbacks = f"{CALLBACK},http://127.0.0.1:{server_port}/api/v1/auth/sso/callback"
    proc = subprocess.Popen(
        [node, "provider.mjs", str(port), CLIENT_ID, CLIENT_SECRET, callbacks],
        cwd=OIDC_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NODE_ENV": "test"},
    )
    assert proc.stdout is not None
    deadline, seen = time.monotonic() + 90, ""  # node loading oidc-provider on a busy machine: slow
    while time.monotonic() < deadline and "ready" not in seen:
        if proc.poll() is not None:
            raise RuntimeError("OpenID provider exited:\n" + seen + proc.stdout.read())
        if select.select([proc.stdout], [], [], 0.5)[0]:
            seen += proc.stdout.readline()
    assert "ready" in seen, seen
    try:
        yield OpenIdProvider(f"http://127.0.0.1:{port}", proc, server_port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def at_provider(authorization_url: str, account: str = "alice", until: str = CALLBACK, **tamper: str) -> str:
    """Play the browser at the provider (login + consent); the callback URL it sends us back to."""
    if tamper:
        parts = urlsplit(authorization_url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()} | tamper
        authorization_url = urlunsplit(parts._replace(query=urlencode(query)))
    url = httpx.URL(authorization_url)
    with httpx.Client() as browser:
        for _ in range(12):
            r = browser.get(url)
            assert r.status_code in (302, 303), r.text[:500]
            location = r.headers["location"]
            if location.startswith(until):
                return location
            url = url.join(location)
            if url.path.startswith("/interaction/"):
                url = url.copy_add_param("account", account)
    raise AssertionError("the provider never redirected back")
