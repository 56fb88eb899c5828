"""Jobs in the browser: submit from the generated form (estimate first), watch it finish live, cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bastion.crypto import sealed
from tests.web.conftest import Dashboard, sign_in

pytestmark = pytest.mark.e2e


def open_form(page: Any, model_type: str, dataset: str) -> None:
    page.goto("/jobs/new")
    page.select_option("#model_type", model_type)
    # htmx swaps in the fields of the chosen model type (generated from its parameter schema)
    page.wait_for_selector("#p-epochs" if model_type == "adaptive_neural_net" else "#p-n_estimators")
    page.select_option("#dataset", dataset)


def test_submit_a_job_and_watch_it_finish_live(dash: Dashboard, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    open_form(page, "adaptive_neural_net", "builtin:wine")
    page.fill("#p-epochs", "25")
    page.fill("#p-patience", "200")
    # the cost estimate is on the page before anything is submitted, and follows the form
    page.wait_for_selector("#estimate:has-text('Estimated cost')")
    assert "USD" in page.inner_text("#estimate")
    page.click("button:has-text('Submit job')")
    page.wait_for_url("**/jobs/*")
    url = page.url
    page.wait_for_selector("#job-state:has-text('completed')", timeout=120_000)
    assert page.url == url  # no reload: the SSE stream moved the page
    assert page.get_attribute("#job-live", "data-finished") == "1"
    assert page.eval_on_selector("#job-progress", "el => el.value") == 1
    # the metric history is drawn (uPlot canvas), epoch by epoch
    page.wait_for_selector("#job-chart canvas")
    epochs = page.eval_on_selector("#job-chart", "el => el._data ? el._data.x.length : 0")
    assert epochs >= 2
    page.wait_for_selector("#job-logs pre:has-text('')")
    assert "(no output yet)" not in page.inner_text("#job-logs")
    # download: sealed to the caller's registered X25519 key; without one the page gives the exact
    # CLI command instead of a button that cannot work (no key ever goes into the browser)
    assert page.locator("a:has-text('Download model')").count() == 0
    job_id = url.rsplit("/", 1)[1]
    assert page.inner_text("#download-cmd") == f"bastion train download {job_id}"
    stored = page.evaluate("() => Object.keys(localStorage).concat(Object.keys(sessionStorage))")
    assert all(k.startswith("htmx-") for k in stored), stored  # only htmx's history cache
    key = sealed.generate_private_key()
    r = dash.api("PUT", "/training/download-key", json={"public_key": sealed.encode_public_key(key)})
    assert r.status_code == 200, r.text
    page.goto(url)
    with page.expect_download() as info:
        page.click("a:has-text('Download model')")
    body = json.loads(Path(info.value.path()).read_text())
    assert body["scheme"] == "x25519-sealed-box-v1" and body["encrypted_model"]
    # the finished job shows in the filtered list
    page.goto("/jobs?status=completed")
    assert url.rsplit("/", 1)[1][:8] in page.inner_text("#job-rows")


def test_cancel_a_running_job(dash: Dashboard, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    open_form(page, "adaptive_neural_net", "builtin:wine")
    page.fill("#p-epochs", "1000")
    page.fill("#p-patience", "200")
    page.fill("#p-batch_size", "1")
    page.click("button:has-text('Submit job')")
    page.wait_for_url("**/jobs/*")
    page.click("button:has-text('Cancel job')")  # confirm() accepted by the watcher
    page.wait_for_selector("#job-state:has-text('cancelled')", timeout=60_000)
    assert page.locator("button:has-text('Cancel job')").count() == 0
    job_id = page.url.rsplit("/", 1)[1]
    status = dash.api("GET", "/admin/training/jobs?limit=50").json()
    assert any(j["job_id"] == job_id and j["status"] == "cancelled" for j in status["data"])
