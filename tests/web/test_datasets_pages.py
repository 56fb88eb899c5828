"""Datasets in the browser: drag-and-drop upload with progress, the de-identification report, and
user-supplied text (dataset and column names) shown as text, however long or hostile."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.web.conftest import Dashboard, sign_in

pytestmark = pytest.mark.e2e
XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
CSV = (
    'patient_name,ssn,age,bp,"'
    + XSS.replace('"', '""')
    + '",label\n'
    + "".join(f"Jane Doe{i},123-45-67{i:02d},{40 + i},{120 + i},{i % 3},{i % 2}\n" for i in range(30))
)


def drop_file(page: Any, name: str, content: str) -> None:
    """A real drop event on the drop zone, carrying a File (as a person dragging one would)."""
    page.evaluate(
        """([name, content]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([content], name, {type: 'text/csv'}));
            const zone = document.getElementById('dropzone');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
        }""",
        [name, content],
    )


def upload(page: Any, display_name: str) -> str:
    page.goto("/datasets")
    drop_file(page, "cohort.csv", CSV)
    assert "cohort.csv" in page.inner_text("#upload-chosen")
    page.fill("#upload-name", display_name)
    page.click("button:has-text('Upload and de-identify')")
    page.wait_for_url("**/datasets/*-*")
    assert page.eval_on_selector("#main", "el => true")
    return str(page.url.rsplit("/", 1)[1])


def test_upload_by_drag_and_drop_and_read_the_report(dash: Dashboard, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    dataset_id = upload(page, "cohort " + XSS)
    report = page.inner_text("section:has(#h-deid)")
    assert "patient_name" in report and "ssn" in report
    actions = page.locator("section:has(#h-deid) .badge").all_inner_texts()
    assert any(a != "keep" for a in actions)  # identifiers were acted on
    # the stored rows carry no name or SSN from the upload
    preview = page.inner_text("section:has(#h-preview)")
    assert "Jane Doe" not in preview and "123-45-67" not in preview
    # hostile names are text: visible literally, never run (the watcher fails on any alert)
    assert XSS in page.inner_text("h1")
    assert page.locator("h1 img, h1 script").count() == 0
    assert XSS in page.inner_text("section:has(#h-schema)")
    api = dash.api("GET", f"/datasets/{dataset_id}").json()
    assert api["rows"] == 30


def test_very_long_names_do_not_break_the_layout(dash: Dashboard, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    upload(page, "W" * 200)
    for path in (page.url, "/datasets", "/"):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"


def test_upload_refusal_is_shown(dash: Dashboard, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    page.goto("/datasets")
    drop_file(page, "bad.csv", "only_a_header\n")
    page.click("button:has-text('Upload and de-identify')")
    page.wait_for_selector("#upload-status.error")
    assert "refused" in page.inner_text("#upload-status")
    assert json.dumps(page.url).endswith('/datasets"')


def test_protected_dataset_preview_asks_for_the_code_and_wrong_codes_lock_out(
    dash: Dashboard, new_page: Any
) -> None:
    page = new_page()
    sign_in(page, "admin")
    dataset_id = upload(page, "protected cohort")
    r = dash.api("PUT", f"/datasets/{dataset_id}/access-code", json={"access_code": "right code 42"})
    assert r.status_code == 200, r.text
    page.goto(f"/datasets/{dataset_id}")
    # the report and schema are there; the rows wait for the code
    assert "patient_name" in page.inner_text("section:has(#h-deid)")
    assert page.locator("section:has(#h-preview) table").count() == 0
    page.fill("#access-code", "wrong code")
    page.click("#code-form button[type=submit]")
    assert "access code" in page.inner_text("#code-error").lower()
    assert page.locator("section:has(#h-preview) table").count() == 0
    page.fill("#access-code", "right code 42")
    page.click("#code-form button[type=submit]")
    assert page.locator("section:has(#h-preview) tbody tr").count() == 20
    assert "right code 42" not in page.content()  # never echoed back into the page
    # five wrong codes lock the caller out of this dataset: then even the right code is refused
    for _ in range(5):
        page.goto(f"/datasets/{dataset_id}")
        page.fill("#access-code", "wrong code")
        page.click("#code-form button[type=submit]")
    page.goto(f"/datasets/{dataset_id}")
    page.fill("#access-code", "right code 42")
    page.click("#code-form button[type=submit]")
    assert "too many failed attempts" in page.inner_text("#code-error")
    assert page.locator("section:has(#h-preview) table").count() == 0
