"""Every page, as an admin and as a viewer: renders, passes axe-core (no serious or critical
violation), and shows a viewer no write control while the server refuses their writes anyway.

``BASTION_SCREENSHOTS=docs/screenshots`` also saves a PNG of each page (``make screenshots``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import Dashboard, axe_violations, cookies_of, sign_in

pytestmark = pytest.mark.e2e
CSV = "patient_name,mrn,admitted,age,bp,chol,label\n" + "".join(
    f"Pat Smith{i},MRN{100000 + i},2024-03-{1 + i % 28:02d},{40 + i % 30},{110 + i % 40},{180 + i % 60},{i % 2}\n"
    for i in range(60)
)
WRITE_LABELS = (
    "New job",
    "Submit job",
    "Cancel job",
    "New federation",
    "Create federation",
    "Enrol",
    "Upload",
    "Quantize",
    "Delete dataset",
    "Create user",
)


def _wait(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def seeded(dash: Dashboard) -> dict[str, str]:
    """One of each object, owned by the admin, made through the API (the pages must show them)."""
    job = dash.api(
        "POST",
        "/training/submit",
        json={
            "model_type": "adaptive_neural_net",
            "dataset_source": "wine",
            "params": {"epochs": 12, "patience": 100},
        },
    ).json()["job_id"]
    dataset = dash.api(
        "POST",
        "/datasets?name=blood%20pressure%20cohort",
        content=CSV.encode(),
        headers={"Content-Type": "text/csv"},
    ).json()["id"]
    fed = dash.api(
        "POST",
        "/federations",
        json={
            "name": "oncology network",
            "model": {"type": "tabular_mlp", "in_features": 64, "num_classes": 10},
            "rounds": 5,
            "min_clients": 2,
        },
    ).json()["id"]
    _wait("the job", lambda: dash.api("GET", f"/training/status/{job}").json()["status"] == "completed")
    models = _wait("the model", lambda: dash.api("GET", "/models").json()["data"])
    # the screenshots show the richest federation (one that ran rounds, if an earlier test made one)
    feds = dash.api("GET", "/federations").json()["data"]
    shown = max(feds, key=lambda f: f["completed_rounds"])["id"]
    return {
        "job": job,
        "dataset": dataset,
        "federation": fed,
        "shown_federation": shown,
        "model": models[0]["id"],
    }


def pages(seeded: dict[str, str]) -> dict[str, str]:
    return {
        "overview": "/",
        "jobs": "/jobs",
        "job-new": "/jobs/new",
        "job": f"/jobs/{seeded['job']}",
        "federations": "/federations",
        "federation-new": "/federations/new",
        "federation": f"/federations/{seeded['shown_federation']}",
        "datasets": "/datasets",
        "dataset": f"/datasets/{seeded['dataset']}",
        "models": "/models",
        "model": f"/models/{seeded['model']}",
        "admin-users": "/admin/users",
        "admin-keys": "/admin/users/{admin}/keys",
        "admin-audit": "/admin/audit",
        "admin-prices": "/admin/prices",
        "admin-workers": "/admin/workers",
        "account": "/account",
    }


def shoot(page: Any, name: str) -> None:
    target = os.environ.get("BASTION_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=name != "admin-audit")


def test_every_page_renders_accessibly(dash: Dashboard, seeded: dict[str, str], new_page: Any) -> None:
    page = new_page()
    page.goto("/login")
    assert axe_violations(page) == []
    shoot(page, "login")
    sign_in(page, "admin")
    for name, path in pages(seeded).items():
        response = page.goto(path.replace("{admin}", dash.user_id("admin")))
        assert response is not None and response.status == 200, (path, response and response.status)
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() == 1, path
        violations = axe_violations(page)
        assert violations == [], (path, [(v["id"], v["impact"], v["nodes"][0]["html"]) for v in violations])
        if name in ("job", "model"):
            page.wait_for_selector(".chart canvas")
        shoot(page, name)


def test_keyboard_alone_reaches_the_navigation_and_signs_out(dash: Dashboard, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Jobs":
            break
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/jobs"
    page.keyboard.press("Enter")
    page.wait_for_url("**/jobs")


def test_a_viewer_sees_no_write_control_and_writes_are_refused(
    dash: Dashboard, seeded: dict[str, str], new_page: Any
) -> None:
    admin = new_page()
    sign_in(admin, "admin")
    admin.goto("/admin/users")
    admin.fill("#nu-name", "val.viewer")
    admin.select_option("#nu-role", "viewer")
    admin.fill("#nu-pw", "a long enough password 1")
    admin.click("button:has-text('Create user')")
    admin.wait_for_selector("tr:has-text('val.viewer')")

    page = new_page()
    sign_in(page, "val.viewer")
    nav = page.locator("nav.sidenav").inner_text()
    assert "Admin" not in nav and "Datasets" not in nav
    for path in (
        "/",
        "/jobs",
        "/jobs/new",
        "/federations",
        "/models",
        "/account",
        f"/federations/{seeded['federation']}",
    ):
        page.goto(path)
        text = page.inner_text("main")
        buttons = page.locator("main button, main a.button").all_inner_texts()
        assert not [b for b in buttons if b.strip() in WRITE_LABELS], (path, buttons)
        assert "Submit job" not in text
    # the admin's objects are not the viewer's: 404, as from the API
    assert page.goto(f"/federations/{seeded['federation']}").status == 404
    assert page.goto("/admin/users").status == 403
    # crafted writes with the viewer's own valid session and CSRF token: refused, audited
    page.goto("/jobs")
    token = page.get_attribute("meta[name=csrf-token]", "content")
    cookies = cookies_of(page)
    for path, data in (
        ("/jobs", {"model_type": "alzheimer_classifier", "dataset": "builtin:synthetic_test_data"}),
        ("/federations", {"name": "sneaky"}),
        (f"/jobs/{seeded['job']}/cancel", {}),
        ("/admin/users", {"username": "sneaky", "role": "admin"}),
    ):
        r = httpx.post(f"{dash.url}{path}", data={**data, "csrf_token": token}, cookies=cookies)
        assert r.status_code == 403, (path, r.status_code)
    denied = dash.api("GET", "/admin/audit?action=auth.forbidden&actor=val.viewer").json()["data"]
    assert len(denied) >= 4


def test_admin_reads_the_audit_log_with_filters_paging_and_chain_state(
    dash: Dashboard, new_page: Any
) -> None:
    for i in range(30):  # enough rows for more than one page (each writes key.create and http.post)
        assert dash.api("POST", "/auth/keys", json={"name": f"k{i}"}).status_code == 201
    page = new_page()
    sign_in(page, "admin")
    page.goto("/admin/audit")
    assert "Not verified" in page.inner_text("#verify-state")
    page.click("button:has-text('Verify the whole chain now')")
    page.wait_for_selector("#verify-state .badge:has-text('chain intact')")
    page.fill("#a-action", "auth.login")
    page.click("form.filters button")
    page.wait_for_url("**action=auth.login**")
    actions = page.locator("#audit-rows tr td:nth-child(4)").all_inner_texts()
    assert actions and all(a.startswith("auth.login") for a in actions)
    page.goto("/admin/audit")
    first = page.locator("#audit-rows tr").count()
    assert first == 51  # a page of 50 and the "Older rows" link
    page.click("#audit-more a")
    page.locator("#audit-rows tr").nth(51).wait_for()  # (wait_for_function would need eval: CSP forbids)
    seqs = [int(s) for s in page.locator("#audit-rows tr td:first-child").all_inner_texts() if s.isdigit()]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)


def test_hostile_text_in_job_errors_and_audit_details_is_shown_as_text(
    dash: Dashboard, seeded: dict[str, str], new_page: Any
) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    page = new_page()
    # a key with a hostile name lands in the audit details (unknown sign-in names are hashed there)
    r = dash.api("POST", "/auth/keys", json={"name": hostile})
    assert r.status_code == 201, r.text
    sign_in(page, "admin")
    page.goto("/admin/audit?action=key.create")
    assert hostile in page.inner_text("#audit-rows")
    assert page.locator("#audit-rows img").count() == 0
    # a job refused for a hostile target column: the error quotes it, as text
    page.goto(f"/jobs/new?dataset=upload:{seeded['dataset']}")
    page.fill("#target", hostile)
    page.click("button:has-text('Submit job')")
    page.wait_for_selector("p.error")
    assert hostile in page.inner_text("p.error")
    assert page.locator("main img[src=x]").count() == 0


def test_predict_from_a_csv_row_and_quantize_a_version(
    dash: Dashboard, seeded: dict[str, str], new_page: Any
) -> None:
    models = dash.api("GET", "/models").json()["data"]
    model = next(m for m in models if m["name"] == "adaptive_neural_net-wine")
    detail = dash.api("GET", f"/models/{model['id']}").json()
    features = detail["history"][0]["input_schema"]["features"]
    assert features
    page = new_page()
    sign_in(page, "admin")
    page.goto(f"/models/{model['id']}")
    csv = (
        ",".join(features)
        + "\n"
        + ",".join("1.5" for _ in features)
        + "\n"
        + ",".join("0.5" for _ in features)
    )
    page.fill("#rows", csv)
    page.click("button:has-text('Predict')")
    page.wait_for_selector("h3:has-text('Predictions')")
    assert page.locator("h3:has-text('Predictions') + table tbody tr").count() == 2
    versions = detail["versions"]
    page.locator("button:has-text('Quantize')").first.click()
    page.wait_for_url(f"**/models/{model['id']}")
    after = dash.api("GET", f"/models/{model['id']}").json()
    assert after["versions"] == versions + 1
    assert after["history"][-1]["lineage"]["quantized_from"] == versions
    assert f"v{versions + 1}" in page.inner_text("#h-versions ~ table")


def test_admin_gives_a_user_a_key_shown_once_then_revokes_it(dash: Dashboard, new_page: Any) -> None:
    uid = dash.add_user("keyholder", "user")
    page = new_page()
    sign_in(page, "admin")
    page.goto("/admin/users")
    page.locator("tr", has_text="keyholder").locator("a:has-text('Keys')").click()
    page.wait_for_url(f"**/admin/users/{uid}/keys")
    assert axe_violations(page) == []
    page.fill("#key-name", "lab laptop")
    page.click("button:has-text('Create a key for keyholder')")
    key = page.input_value("#new-key")
    me = httpx.get(f"{dash.url}/api/v1/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["username"] == "keyholder"
    page.goto(f"/admin/users/{uid}/keys")
    assert key not in page.content()  # shown once
    page.click("button[aria-label='revoke key lab laptop']")
    page.wait_for_selector("tr:has-text('lab laptop') .badge:has-text('revoked')")
    assert httpx.get(f"{dash.url}/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 401
