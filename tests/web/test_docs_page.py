"""/docs in a real browser under its Content-Security-Policy: no inline script or style is needed."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Dashboard


def test_swagger_ui_renders_and_expands_without_any_csp_violation(new_page: Any, dash: Dashboard) -> None:
    page = new_page()
    violations: list[str] = []
    page.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    response = page.goto("/docs")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    page.wait_for_selector(".opblock", state="visible")
    assert page.locator(".opblock").count() > 20, "the operations are listed"
    page.locator(".opblock-summary").first.click()  # expanding an operation renders more components
    page.wait_for_selector(".opblock-body", state="visible")
    page.locator("section.models h4, section.models-control").first.click()  # the schema models
    assert not violations, violations
    page.watcher.check()  # and no script error at all
