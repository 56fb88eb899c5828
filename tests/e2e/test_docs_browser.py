"""/docs in a real Chromium: Swagger UI renders from local assets under the strict page CSP."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_swagger_ui_renders_without_cdn_or_csp_violations(
    server_factory: Callable[..., ServerProcess],
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (the project's set-up installs Debian's chromium)")
    server = server_factory(args=["--no-worker"]).start()
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            console: list[str] = []
            hosts: set[str] = set()
            page.on("console", lambda m: console.append(m.text))
            page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert "Bastion" in page.inner_text(".info")
            assert page.locator(".opblock").count() > 20
        finally:
            browser.close()
    assert hosts == {f"127.0.0.1:{server.port}"}, f"only same-origin requests: {hosts}"
    assert not [m for m in console if "Content Security Policy" in m], console
