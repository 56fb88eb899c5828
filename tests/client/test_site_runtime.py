"""The site runtime on the one transport: its credential, its retry set and its ``retry`` events.

The coordinator is an ``httpx.MockTransport`` handler, so the failures are exact; the site's ``sleep``
records the waits instead of sleeping.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from bastion.client.errors import NotFoundError
from bastion.client.site.base import FitResult, SiteEvent, SiteTrainer
from bastion.client.site.runtime import SiteClient

INFO = {"state": "waiting", "round": 1, "round_state": "open", "submitted": False}


class Idle(SiteTrainer):
    def fit(self, params: dict[str, np.ndarray], config: object) -> FitResult:
        raise AssertionError("not trained in these tests")


def site_over(
    answers: list[httpx.Response], tmp_path: Path
) -> tuple[SiteClient, list[httpx.Request], list[float]]:
    requests: list[httpx.Request] = []
    waits: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answers.pop(0)

    site = SiteClient(
        "http://coordinator.test",
        "fed-1",
        "bsp_secret",
        Idle(),
        state_dir=tmp_path / "site",
        http=httpx.Client(base_url="http://coordinator.test", transport=httpx.MockTransport(handle)),
        sleep=waits.append,
    )
    return site, requests, waits


def failure(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


def test_overload_and_restarts_are_retried_with_a_retry_event_each(tmp_path: Path) -> None:
    answers = [
        failure(503, "unavailable", **{"Retry-After": "4"}),
        failure(502, "bad_gateway"),
        failure(423, "locked"),
        failure(429, "rate_limited"),
        httpx.Response(200, json=INFO),
    ]
    site, requests, waits = site_over(answers, tmp_path)
    events: list[SiteEvent] = []
    site.on_event = events.append
    assert site.info() == INFO
    assert waits == [4.0, 1.0, 2.0, 4.0]  # Retry-After, then the backoff (it doubles at every wait)
    assert [(e.kind, e.data["code"]) for e in events] == [
        ("retry", "unavailable"),
        ("retry", "bad_gateway"),
        ("retry", "locked"),
        ("retry", "rate_limited"),
    ]
    assert events[0].message == "unavailable; retrying in 4.0 s"
    assert {r.url.path for r in requests} == {"/api/v1/federations/fed-1/site/info"}
    assert all(r.headers["Authorization"] == "Bearer bsp_secret" for r in requests)
    assert all("X-API-Key" not in r.headers for r in requests)


def test_a_refusal_is_not_retried(tmp_path: Path) -> None:
    site, requests, waits = site_over([failure(404, "not_found")], tmp_path)
    with pytest.raises(NotFoundError):
        site.info()
    assert len(requests) == 1 and waits == []


def test_close_releases_the_connection_it_was_given(tmp_path: Path) -> None:
    site, _requests, _waits = site_over([], tmp_path)
    site.close()
    assert site.transport.http.is_closed
