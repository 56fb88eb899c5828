"""The one transport's retry: which failures are tried again, how long it waits, when it gives up.

The server side is an ``httpx.MockTransport`` handler scripted per test, so each answer (503 with
Retry-After, a dropped connection, a 404) is exact; waits go to a recording ``sleep`` and the
monotonic clock is advanced by it, so nothing here sleeps for real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from bastion.client import transport as transport_module
from bastion.client.errors import (
    BastionClientError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
)
from bastion.client.transport import Retry, Transport

Answer = Callable[[httpx.Request], httpx.Response]


def error(status: int, code: str, **headers: str) -> Answer:
    def answer(_request: httpx.Request) -> httpx.Response:
        body = {"success": False, "error": {"code": code, "message": code}}
        return httpx.Response(status, json=body, headers=headers)

    return answer


def ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


class Script:
    """Answers requests in order and keeps the time: ``sleep`` moves the fake clock."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []
        self.retried: list[tuple[str, float]] = []
        self.now = 1000.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)(request)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def on_retry(self, error: BastionClientError, wait: float) -> None:
        self.retried.append((error.code, wait))

    def transport(self, retry: Retry | None) -> Transport:
        http = httpx.Client(base_url="http://bastion.test", transport=httpx.MockTransport(self.handle))
        return Transport(
            "http://bastion.test",
            "key-1",
            http=http,
            retry=retry,
            on_retry=self.on_retry,
            sleep=self.sleep,
        )


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Script]]:
    scripts: list[Script] = []

    def monotonic() -> float:
        return scripts[-1].now if scripts else 0.0

    monkeypatch.setattr(transport_module.time, "monotonic", monotonic)
    yield scripts


def test_without_a_policy_nothing_is_retried(fake_clock: list[Script]) -> None:
    script = Script(error(503, "unavailable", **{"Retry-After": "7"}))
    fake_clock.append(script)
    with pytest.raises(ServerError) as info:
        script.transport(None).json("GET", "/api/v1/x")
    assert info.value.retry_after == 7.0 and len(script.requests) == 1 and script.waits == []


def test_503_and_429_wait_for_retry_after_and_send_credentials_again(fake_clock: list[Script]) -> None:
    script = Script(
        error(503, "unavailable", **{"Retry-After": "3"}),
        error(429, "rate_limited", **{"Retry-After": "2"}),
        ok,
    )
    fake_clock.append(script)
    assert script.transport(Retry()).json("POST", "/api/v1/x", json={"a": 1}) == {"ok": True}
    assert script.waits == [3.0, 2.0]
    assert script.retried == [("unavailable", 3.0), ("rate_limited", 2.0)]
    assert all(r.headers["X-API-Key"] == "key-1" and r.content == b'{"a":1}' for r in script.requests)


def test_network_errors_back_off_exponentially_up_to_the_maximum(fake_clock: list[Script]) -> None:
    script = Script(dropped, dropped, dropped, dropped, ok)
    fake_clock.append(script)
    policy = Retry(initial=1.0, factor=3.0, maximum=5.0)
    assert script.transport(policy).json("GET", "/api/v1/x") == {"ok": True}
    assert script.waits == [1.0, 3.0, 5.0, 5.0]
    assert {code for code, _ in script.retried} == {"transport"}


def test_client_errors_and_unlisted_statuses_raise_at_once(fake_clock: list[Script]) -> None:
    script = Script(error(404, "not_found"), error(500, "boom"))
    fake_clock.append(script)
    t = script.transport(Retry())
    with pytest.raises(NotFoundError):
        t.json("GET", "/api/v1/x")
    with pytest.raises(ServerError):  # a plain 500 is not in the default statuses
        t.json("GET", "/api/v1/x")
    assert len(script.requests) == 2 and script.waits == []


def test_server_errors_policy_retries_every_5xx(fake_clock: list[Script]) -> None:
    script = Script(error(500, "boom"), error(502, "bad_gateway"), ok)
    fake_clock.append(script)
    assert script.transport(Retry(server_errors=True)).json("GET", "/x") == {"ok": True}
    assert script.waits == [0.5, 1.0]


def test_gives_up_after_the_budget_with_the_last_error(fake_clock: list[Script]) -> None:
    script = Script(*[error(429, "rate_limited", **{"Retry-After": "4"})] * 10)
    fake_clock.append(script)
    with pytest.raises(RateLimitError) as info:
        script.transport(Retry(give_up_after=10.0)).json("GET", "/x")
    # failures at t=0, 4, 8 and 12: the fourth is past the ten-second budget
    assert script.waits == [4.0, 4.0, 4.0] and len(script.requests) == 4
    assert info.value.code == "rate_limited"


def test_a_per_call_policy_overrides_the_transport(fake_clock: list[Script]) -> None:
    script = Script(dropped, dropped)
    fake_clock.append(script)
    with pytest.raises(TransportError) as info:
        script.transport(Retry()).send("GET", "/x", retry=Retry(give_up_after=0.1, initial=1.0))
    assert script.waits == [1.0] and "cannot reach http://bastion.test" in info.value.message


def test_stream_sends_credentials_and_maps_error_statuses(fake_clock: list[Script]) -> None:
    def events(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="event: end\ndata: {}\n\n")

    script = Script(events, error(404, "not_found"))
    fake_clock.append(script)
    t = script.transport(None)
    with t.stream("GET", "/events", headers={"Accept": "text/event-stream"}) as response:
        assert list(response.iter_lines()) == ["event: end", "data: {}", ""]
    assert script.requests[0].headers["X-API-Key"] == "key-1"
    assert script.requests[0].headers["Accept"] == "text/event-stream"
    with pytest.raises(NotFoundError), t.stream("GET", "/events"):
        pytest.fail("an error status must not be streamed")
