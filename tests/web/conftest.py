"""One real `bastion serve` and one real Chromium (Debian's, driven by Playwright) for the dashboard tests.

Both are started once per module run of this package (they take seconds); every test opens its own
browser context, so cookies never leak between tests.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import JWT, MASTER, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a long enough password 1"
VIEWPORT = {"width": 1280, "height": 860}


@dataclass
class Dashboard:
    server: ServerProcess
    tmp: Path
    users: dict[str, str] = field(default_factory=dict)  # username -> id

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, key: str = "admin", **kw: Any) -> httpx.Response:
        headers = {"X-API-Key": self.server.keys[key], **kw.pop("headers", {})}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=30, **kw)

    def add_user(self, username: str, role: str, password: str = PASSWORD) -> str:
        r = self.api("POST", "/admin/users", json={"username": username, "role": role, "password": password})
        assert r.status_code == 201, r.text
        self.users[username] = r.json()["id"]
        return str(r.json()["id"])

    def user_id(self, username: str) -> str:
        cursor: str | None = None
        while username not in self.users:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            r = self.api("GET", "/admin/users", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            self.users.update({u["username"]: u["id"] for u in page["data"]})
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return self.users[username]


@pytest.fixture(scope="package")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        BASTION_DATA_DIR=str(tmp / ".bastion"),
        BASTION_MASTER_KEY=MASTER,
        BASTION_JWT_SECRET=JWT,
        BASTION_LOGIN_RATE_LIMIT="10000/minute",
        BASTION_RATE_LIMIT="100000/minute",
        BASTION_MAX_ACTIVE_JOBS_PER_USER="20",
        PYTHONUNBUFFERED="1",
    )
    server = ServerProcess(tmp, env, []).start()
    d = Dashboard(server, tmp)
    # The admin gets a password through the API; "user" keeps only its bootstrap key, so the first
    # sign-in test can walk the API-key path as a newcomer would. Changing one's own password needs
    # current_password, which a bootstrap account does not have, so a second admin sets it, as an
    # operator resetting a colleague's password would.
    helper = d.add_user("fixture.admin", "admin")
    r = d.api("POST", f"/admin/users/{helper}/keys", json={"name": "fixture"})
    assert r.status_code == 201, r.text
    server.keys["fixture.admin"] = r.json()["key"]
    r = d.api("PATCH", f"/admin/users/{d.user_id('admin')}", key="fixture.admin", json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    try:
        yield d
    finally:
        server.stop(signal.SIGTERM)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), (
        "Debian's chromium is missing: `make install-chromium` (apt-get install chromium)"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watcher:
    """Fails a test on any script error, CSP violation or alert(): XSS and broken pages both show here."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console: {msg.text}")
                if msg.type == "error" and "status of 4" not in msg.text
                else None
            ),
        )
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm":  # our own confirmations (cancel a job): accept
            dialog.accept()
            return
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check(self) -> None:
        assert not self.dialogs, f"a dialog opened (script ran): {self.dialogs}"
        assert not self.errors, "\n".join(self.errors)


@pytest.fixture
def new_page(browser: Any, dash: Dashboard) -> Iterator[Any]:
    """A factory of pages in fresh browser contexts; every page is checked for errors at teardown."""
    contexts: list[tuple[Any, Watcher]] = []

    def make() -> Any:
        context = browser.new_context(viewport=VIEWPORT, base_url=dash.url)
        page = context.new_page()
        page.set_default_timeout(20_000)
        watcher = Watcher(page)
        page.watcher = watcher
        contexts.append((context, watcher))
        return page

    yield make
    for context, watcher in contexts:
        context.close()
        watcher.check()


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def cookies_of(page: Any) -> dict[str, str]:
    return {c["name"]: c["value"] for c in page.context.cookies()}


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core (vendored from npm, served by Bastion itself, so the strict CSP allows it)."""
    page.add_script_tag(url="/static/vendor/axe.min.js")
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [v for v in result if v["impact"] in ("serious", "critical")]
