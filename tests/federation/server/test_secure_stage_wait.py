"""Stage answers that long-poll for the next stage (``POST .../secagg/{kind}?wait=T``) and the session
view riding on ``/info?secagg=true``: one request per stage instead of a send and a poll."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi.testclient import TestClient

from bastion.client.site.runtime import SiteClient
from bastion.context import Context
from tests.federation.server.test_secure_rounds import (  # noqa: F401  (fixtures)
    BASE,
    TINY,
    Federation,
    clock,
    fed,
    masked,
)


def _advertise(site: SiteClient, *, wait: bool) -> str:
    """Train and advertise: one step of the secure participant (a first view read included)."""
    return site.secure.step(site.info(), wait=wait)


def _until(check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_the_answer_that_closes_a_stage_carries_the_next_stage_view(fed: Federation) -> None:  # noqa: F811
    fed.create(3)
    first, second, last = fed.sites.values()
    assert _advertise(first, wait=False) == "progress" and first.secure.carried is None
    assert _advertise(second, wait=False) == "progress"
    assert _advertise(last, wait=True) == "progress"
    view = last.secure.carried
    assert view is not None and view["stage"] == "share" and view["round"] == 1
    assert view["message"] is not None  # the keys broadcast addressed to this site
    assert view == last.secure.secagg_state()  # exactly what GET .../secagg answers


def test_a_waiting_stage_answer_is_woken_by_the_stage_close(fed: Federation, ctx: Context) -> None:  # noqa: F811
    fed.create(3)
    first, second, last = fed.sites.values()
    for site in (first, second, last):
        _advertise(site, wait=False)  # the third advert closes the advertise stage
    assert first.secure.step(first.info()) == "progress"  # its shares: two of three still owed
    last.poll_timeout = 30.0
    outcome: list[str] = []
    waiting = threading.Thread(target=lambda: outcome.append(last.secure.step(last.info(), wait=True)))
    waiting.start()
    _until(lambda: ctx.services.fl_coordinator.epochs.waiting(fed.fid) == 1)  # its answer waits
    assert second.secure.step(second.info()) == "progress"  # the last shares owed: the stage closes
    waiting.join(20)
    assert not waiting.is_alive() and outcome == ["progress"]
    view = last.secure.carried
    assert view is not None and view["stage"] == "mask" and view["message"] is not None


def test_a_stage_answer_that_waits_in_vain_returns_the_same_stage_after_the_timeout(
    fed: Federation,  # noqa: F811
) -> None:
    fed.create(3)
    site = next(iter(fed.sites.values()))
    site.poll_timeout = 0.05
    assert _advertise(site, wait=True) == "progress"
    view = site.secure.carried
    assert view is not None and view["stage"] == "advertise"  # the others have not advertised
    # advance() then goes back through /info (as after a GET long poll that timed out)
    info = site.secure.advance(site.info())
    assert info["round"] == 1 and info["secagg"]["stage"] == "advertise"


def test_an_old_style_site_without_wait_still_gets_the_short_answer_and_the_get_long_poll(
    fed: Federation,  # noqa: F811
) -> None:
    fed.create(3)
    sites = list(fed.sites.values())
    for site in sites[:2]:
        _advertise(site, wait=False)
    last = sites[2]
    answers: list[tuple[str, dict[str, Any]]] = []
    call = last.call

    def spy(method: str, path: str, **kwargs: Any) -> Any:
        response = call(method, path, **kwargs)
        if method == "POST":
            answers.append((path, response.json()))
        return response

    last.call = spy  # type: ignore[method-assign]
    info = last.info()
    assert "secagg" not in info  # the session view rides on /info only when asked for
    assert last.secure.step(info) == "progress"  # trains and advertises without wait
    sent = dict(answers)["/secagg/advertise"]
    assert sent == {"accepted": True, "session": sent["session"], "stage": "share"}  # no view in it
    answer = last.secure.secagg_state(wait_session=sent["session"], wait_stage="advertise")
    assert answer["stage"] == "share" and answer["message"] is not None  # the GET long poll as before
    fed.drive(fed.round_closed(1))  # step-by-step sites without wait finish the round


def test_info_carries_the_session_view_when_asked(fed: Federation, client: TestClient) -> None:  # noqa: F811
    fed.create(3)
    site = next(iter(fed.sites.values()))
    info = site.info(secagg=True)
    assert info["secagg"] == site.secure.secagg_state()
    assert info["secagg"]["stage"] == "advertise" and info["secagg"]["member"]
    # a plain federation's /info has no session view, even when asked
    fid = client.post(
        BASE, json={"name": "plain", "model": TINY, "min_clients": 1}, headers=fed.owner.headers
    ).json()["id"]
    token = client.post(f"{BASE}/{fid}/participants", json={"name": "p"}, headers=fed.owner.headers).json()[
        "token"
    ]
    r = client.get(
        f"{BASE}/{fid}/site/info", params={"secagg": "true"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and "secagg" not in r.json()


def test_sites_that_wait_on_their_answers_finish_rounds_with_the_exact_sum(fed: Federation) -> None:  # noqa: F811
    """advance(): each site's stage answers long-poll; run concurrently, they finish a round."""
    fed.create(3)
    for site in fed.sites.values():
        site.poll_timeout = 10.0
    infos: dict[str, dict[str, Any]] = {}

    def play(name: str, site: SiteClient) -> None:
        info = site.info(secagg=True)
        while info["round"] == 1 and info["state"] == "running":
            info = site.secure.advance(info)
        infos[name] = info

    threads = [threading.Thread(target=play, args=item) for item in fed.sites.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not t.is_alive() for t in threads)
    assert fed.round_closed(1)()
    assert all(masked(1)(name, site) for name, site in fed.sites.items())
    assert all(info["round"] == 2 for info in infos.values())
