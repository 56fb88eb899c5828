"""The projects pages in the browser: your projects, and one project's members and analytics; a
stranger gets the 404 page, as from the API; no serious accessibility violation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import Dashboard, axe_violations, sign_in

pytestmark = pytest.mark.e2e


def _key(dash: Dashboard, username: str) -> None:
    uid = dash.add_user(username, "user")
    r = dash.api("POST", f"/admin/users/{uid}/keys", json={"name": "t"})
    assert r.status_code == 201, r.text
    dash.server.keys[username] = r.json()["key"]


def test_project_page_shows_members_and_analytics(dash: Dashboard, new_page: Any) -> None:
    _key(dash, "proj.owner")
    _key(dash, "proj.colleague")
    _key(dash, "proj.stranger")
    r = dash.api(
        "POST", "/projects", key="proj.owner", json={"name": "Cardio <b>study</b>", "domain": "healthcare"}
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = dash.api("POST", f"/projects/{pid}/members", key="proj.owner", json={"user": "proj.colleague"})
    assert r.status_code == 201, r.text

    page = new_page()
    sign_in(page, "proj.colleague")
    page.goto("/projects")
    assert "Cardio <b>study</b>" in page.inner_text("main"), "names are text, never markup"
    page.click(f"a[href='/projects/{pid}']")
    main = page.inner_text("main")
    assert "Members and contributions" in main and "proj.owner" in main and "proj.colleague" in main
    assert "CPU-hours" in main and "No model yet." in main and "No federation yet." in main
    assert axe_violations(page) == []

    other = new_page()
    sign_in(other, "proj.stranger")
    assert other.goto(f"/projects/{pid}").status == 404
    other.goto("/projects")
    assert "Cardio" not in other.inner_text("main")
