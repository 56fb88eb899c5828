"""The price table edited from the admin page (admin only, CSRF, audited) and one's own sign-in
sessions ended from the account page (only one's own)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.web.conftest import Dashboard, cookies_of, sign_in

pytestmark = pytest.mark.e2e


def csrf_of(page: Any) -> str:
    return str(page.get_attribute("meta[name=csrf-token]", "content"))


def test_admin_edits_the_price_table_from_the_page(dash: Dashboard, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    page.goto("/admin/prices")
    page.fill("input[aria-label='new profile name']", "web-test")
    page.fill("input[aria-label='hourly cost of the new profile']", "2.5")
    page.fill("input[aria-label='description of the new profile']", "<b>bold</b> tier")
    page.click("#price-form button[type=submit]")
    page.wait_for_selector("input[value='web-test']")
    # the API sees the same table (one service), and the change is audited
    table = dash.api("GET", "/admin/training/prices").json()["prices"]
    assert table["web-test"]["hourly_cost"] == 2.5 and table["web-test"]["description"] == "<b>bold</b> tier"
    assert "cpu-small" in table
    audit = dash.api("GET", "/admin/audit?action=training.prices.update").json()["data"]
    assert audit and audit[0]["actor"] == "admin"
    # a bad row is refused with a clear message, nothing changes
    page.fill("input[aria-label='hourly cost of web-test']", "")
    page.click("#price-form button[type=submit]")
    assert "needs an hourly cost" in page.inner_text(".error")
    # removing the row removes the profile
    page.goto("/admin/prices")
    page.check("input[aria-label='remove web-test']")
    page.click("#price-form button[type=submit]")
    page.wait_for_url("**/admin/prices")
    assert "web-test" not in dash.api("GET", "/admin/training/prices").json()["prices"]
    # a non-admin's crafted POST, with their own valid session and token, is refused
    dash.add_user("price.user", "user")
    other = new_page()
    sign_in(other, "price.user")
    form = {"csrf_token": csrf_of(other), "profile_0": "cheap", "hourly_cost_0": "0"}
    r = httpx.post(
        f"{dash.url}/admin/prices", data=form, cookies=cookies_of(other), headers={"Origin": dash.url}
    )
    assert r.status_code == 403
    # and the admin's own cookie without the CSRF token is refused too
    r = httpx.post(
        f"{dash.url}/admin/prices",
        data={**form, "csrf_token": "x" * 64},
        cookies=cookies_of(page),
        headers={"Origin": dash.url},
    )
    assert r.status_code == 403
    assert "cheap" not in dash.api("GET", "/admin/training/prices").json()["prices"]


def test_own_sessions_are_revocable_from_the_account_page(dash: Dashboard, new_page: Any) -> None:
    dash.add_user("two.browsers", "viewer")
    laptop, phone = new_page(), new_page()
    sign_in(laptop, "two.browsers")
    sign_in(phone, "two.browsers")
    laptop.goto("/account")
    assert laptop.locator("#session-rows tr").count() == 2
    laptop.click("#session-rows button:has-text('Sign out')")  # the other browser's session
    laptop.wait_for_url("**/account")
    assert laptop.locator("#session-rows tr").count() == 1
    phone.goto("/account")
    phone.wait_for_url("**/login**")  # that session is over
    laptop.goto("/account")  # this one is not
    assert "/login" not in laptop.url
    # someone else's session id: not found, and it stays alive
    dash.add_user("bystander", "viewer")
    other = new_page()
    sign_in(other, "bystander")
    other.goto("/account")
    assert other.locator("#session-rows form").count() == 0  # only the current session
    r = httpx.post(
        f"{dash.url}/account/sessions/{'0' * 32}/revoke",
        data={"csrf_token": csrf_of(laptop)},
        cookies=cookies_of(laptop),
        headers={"Origin": dash.url},
    )
    assert r.status_code == 404
