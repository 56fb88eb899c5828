"""A federation from the browser: create it (with DP), enrol three sites (each token shown once), run
three real `bastion fl client` processes and watch the round charts fill without reloading."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.support import Sites
from tests.web.conftest import Dashboard, sign_in

pytestmark = pytest.mark.e2e
MODEL = json.dumps({"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [8]})


@pytest.fixture
def sites(dash: Dashboard) -> Iterator[Sites]:
    s = Sites(dash.tmp)
    yield s
    s.kill_all()


def test_create_enrol_three_sites_and_watch_the_round_chart_fill(
    dash: Dashboard, new_page: Any, sites: Sites
) -> None:
    page = new_page()
    sign_in(page, "admin")
    page.goto("/federations/new")
    page.fill("#name", "ward study")
    page.fill("#model", MODEL)
    page.fill("#rounds", "3")
    page.fill("#min_clients", "3")
    page.fill("#round_timeout_s", "120")
    page.fill("#lr", "0.1")
    page.select_option("#server_dataset", "builtin:digits")
    page.check("input[name=dp]")
    page.fill("#noise_multiplier", "0.8")
    page.fill("#clip_norm", "5")
    assert "epsilon" in page.inner_text("#eps-help") or "ε" in page.inner_text("#eps-help")
    page.click("button:has-text('Create federation')")
    page.wait_for_url("**/federations/*-*")
    fid = page.url.rsplit("/", 1)[1]

    tokens = {}
    for name in ("north", "south", "east"):
        page.fill("#site_name", name)
        page.click("button:has-text('Enrol')")
        page.wait_for_selector("#site-token")
        tokens[name] = page.input_value("#site-token")
        command = page.inner_text("pre.cmd")
        assert tokens[name] in command and fid in command and "bastion fl client" in command
    # the token is shown once: a fresh load of the page does not carry it
    page.goto(f"/federations/{fid}")
    assert page.locator("#site-token").count() == 0
    assert all(t not in page.content() for t in tokens.values())
    assert page.locator("#h-sites ~ table tbody tr").count() == 3

    page.evaluate("window.__same_page = true")
    for name, token in tokens.items():
        sites.register(dash.server, fid, token, name)
    for i, (name, token) in enumerate(tokens.items(), start=1):
        sites.start(dash.server, fid, name, token, f"{i}/3")
    page.wait_for_selector("#fed-rounds:has-text('3/3')", timeout=300_000)
    page.wait_for_selector("#fed-state:has-text('completed')", timeout=60_000)
    assert page.evaluate("window.__same_page === true")  # filled live (SSE + htmx), not by reloads
    for chart in ("fed-acc", "fed-loss", "fed-eps"):
        data = json.loads(page.get_attribute(f"#{chart}", "data-series"))
        assert data["x"] == [1, 2, 3], (chart, data)
        assert data["series"] and all(len(v) == 3 for v in data["series"].values())
    assert page.locator("#fed-acc canvas").count() == 1
    assert "server_accuracy" in json.loads(page.get_attribute("#fed-acc", "data-series"))["series"]
    assert "dp_epsilon" in json.loads(page.get_attribute("#fed-eps", "data-series"))["series"]
    timeline = page.inner_text("ol.timeline")
    assert "round 3" in timeline and "round 1" in timeline
    for name in tokens:
        assert sites.wait(name) == 0, sites.log(name)


def test_a_hostile_federation_name_is_refused_and_shown_as_text(dash: Dashboard, new_page: Any) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    page = new_page()
    sign_in(page, "admin")
    page.goto("/federations/new")
    page.fill("#name", hostile)
    page.fill("#model", MODEL)
    page.click("button:has-text('Create federation')")
    # the browser's own check stops it first (the field's pattern) ...
    assert page.evaluate("() => document.getElementById('name').validity.patternMismatch")
    # ... and a crafted POST past it is refused by the server, the name echoed only as text
    page.eval_on_selector("#name", "el => el.removeAttribute('pattern')")
    page.click("button:has-text('Create federation')")
    page.wait_for_selector(".error")
    assert page.input_value("#name") == hostile
    assert page.locator("main img[src=x]").count() == 0
