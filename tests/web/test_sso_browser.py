"""The dashboard's "Sign in with SSO" in a real browser: `bastion serve` configured for the real OpenID
provider, Chromium clicking through, app.js posting the fragment's one-time code (CSP: no inline script)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.oidc_provider import OpenIdProvider
from tests.web.conftest import VIEWPORT, Watcher

pytestmark = pytest.mark.e2e


def test_sign_in_with_sso_button(
    oidc_provider: OpenIdProvider, server_factory: Callable[..., Any], browser: Any
) -> None:
    server = oidc_provider.start_server(server_factory)
    context = browser.new_context(viewport=VIEWPORT, base_url=server.url)
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        watcher = Watcher(page)
        page.goto("/login?next=/models")
        page.get_by_role("link", name="Sign in with SSO").click()
        # provider (it signs in its default account, alice) → callback → /login/sso/done → app.js POST
        page.wait_for_url(server.url + "/models")
        assert "sso_code" not in page.url
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["bastion_session"]["httpOnly"] and cookies["bastion_refresh"]["httpOnly"]
        assert "alice" in page.content()
        page.goto("/login/sso/done?next=/jobs")  # arriving without a code: a message, no request
        assert "did not complete" in page.locator("#sso-status").inner_text()
        assert page.url.endswith("/login/sso/done?next=/jobs")
        watcher.check()
    finally:
        context.close()
