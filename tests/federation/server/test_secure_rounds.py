"""Secure-aggregation rounds over the federation's HTTP routes, with the real site client.

Sites are :class:`SiteClient` objects over an in-process transport, stepped one move at a time so a
test can make chosen sites go silent at a chosen stage; the coordinator's clock is a fake one, so a
stage's timeout passes when the test says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bastion.client.site.base import FitResult, SiteTrainer
from bastion.client.site.runtime import SiteClient
from bastion.context import Context
from bastion.crypto import signing
from bastion.federation.secagg import AdvertiseKeys
from bastion.federation.secagg.keys import sign_advert
from bastion.federation.secagg.vector import flatten
from bastion.store.tables import AuditEvent, FederationUpdate
from tests.conftest import Caller
from tests.federation.server.support import FakeClock

BASE = "/api/v1/federations"
TINY = {"type": "tabular_mlp", "in_features": 4, "num_classes": 2, "hidden": [3]}
STAGE_S = 30.0


class DeltaTrainer(SiteTrainer):
    """Moves the global parameters by a fixed pseudo-random delta, so the expected mean is known."""

    def __init__(self, seed: int, scale: float = 0.3) -> None:
        self.seed, self.scale = seed, scale
        self.deltas: list[dict[str, np.ndarray]] = []

    def fit(self, params: dict[str, np.ndarray], config: Mapping[str, Any]) -> FitResult:
        rng = np.random.default_rng(self.seed * 1000 + int(config["round"]))
        delta = {
            k: rng.uniform(-self.scale, self.scale, v.shape).astype(np.float32) for k, v in params.items()
        }
        self.deltas.append(delta)
        return FitResult({k: params[k] + delta[k] for k in params}, 10)


class Federation:
    """A secure federation and its sites, driven step by step."""

    def __init__(self, client: TestClient, owner: Caller, tmp_path: Path, clock: FakeClock) -> None:
        self.client, self.owner, self.tmp, self.clock = client, owner, tmp_path, clock
        self.sites: dict[str, SiteClient] = {}
        self.trainers: dict[str, DeltaTrainer] = {}
        self.fid = ""

    def create(self, sites: int, **body: Any) -> Federation:
        payload: dict[str, Any] = {
            "name": "secure",
            "model": TINY,
            "rounds": 2,
            "min_clients": 3,
            "target_clients": sites,
            "privacy": {"secure_aggregation": {"stage_timeout_s": STAGE_S}},
        }
        payload.update(body)
        r = self.client.post(BASE, json=payload, headers=self.owner.headers)
        assert r.status_code == 201, r.text
        self.fid = r.json()["id"]
        for i in range(1, sites + 1):
            name = f"site-{i}"
            token = self.client.post(
                f"{BASE}/{self.fid}/participants", json={"name": name}, headers=self.owner.headers
            ).json()["token"]
            self.trainers[name] = DeltaTrainer(i)
            self.sites[name] = SiteClient(
                "http://testserver",
                self.fid,
                token,
                self.trainers[name],
                state_dir=self.tmp / name,
                http=TestClient(self.client.app),
                poll_timeout=0.05,
            )
            self.sites[name].join()
        return self

    def drive(
        self, until: Callable[[], bool], silent: Callable[[str, SiteClient], bool] = lambda n, s: False
    ) -> None:
        """Step every site that is not silent until ``until()``; let stage timeouts pass when stuck."""
        for _ in range(60):
            if until():
                return
            moved = False
            for name, site in self.sites.items():
                if silent(name, site):
                    continue
                info = site.info()
                if info["state"] == "running":
                    moved |= site.step(info) == "progress"
            if until():
                return
            if not moved:
                self.clock.advance(STAGE_S + 1)
        raise AssertionError(f"stuck: {self.status()}")

    def status(self) -> dict[str, Any]:
        return dict(self.client.get(f"{BASE}/{self.fid}/status", headers=self.owner.headers).json())

    def rounds(self) -> list[dict[str, Any]]:
        return list(self.client.get(f"{BASE}/{self.fid}/rounds", headers=self.owner.headers).json()["data"])

    def round_closed(self, number: int) -> Callable[[], bool]:
        return lambda: any(r["round"] == number and r["state"] == "closed" for r in self.rounds())

    def global_params(self) -> dict[str, np.ndarray]:
        from bastion.federation.tensors import decode

        blob = self.client.get(f"{BASE}/{self.fid}/model", headers=self.owner.headers).content
        return {k: np.array(v) for k, v in decode(blob).items()}


@pytest.fixture
def clock(ctx: Context) -> FakeClock:
    fake = FakeClock()
    ctx.services.fl_coordinator.clock = fake
    return fake


@pytest.fixture
def fed(client: TestClient, alice: Caller, tmp_path: Path, clock: FakeClock) -> Federation:
    return Federation(client, alice, tmp_path, clock)


def masked(round: int) -> Callable[[str, SiteClient], bool]:
    return lambda _n, s: round in s.state.data.get("secagg_masked_rounds", [])


def shared(_name: str, site: SiteClient) -> bool:
    client = site.secure._client
    return client is not None and client.stage.value == "mask"


def expected_mean(fed: Federation, names: list[str], round_index: int) -> np.ndarray:
    return np.mean([flatten(fed.trainers[n].deltas[round_index])[0] for n in names], axis=0)


def test_two_sites_dropping_after_their_masked_input_are_still_in_the_exact_sum(fed: Federation) -> None:
    fed.create(10)
    base = flatten(fed.global_params())[0]
    late = {"site-9", "site-10"}
    fed.drive(fed.round_closed(1), lambda n, s: n in late and masked(1)(n, s))
    got = flatten(fed.global_params())[0] - base
    want = expected_mean(fed, list(fed.sites), 0)
    rnd = fed.rounds()[0]
    assert rnd["close_reason"] == "secure_aggregation" and rnd["updates"] == 10
    # quantization error of the sum is at most n / (2 * scale); divided by n for the mean, plus float32
    assert np.max(np.abs(got - want)) < 1e-5


def test_two_sites_dropping_before_masking_leave_the_exact_sum_of_the_other_eight(fed: Federation) -> None:
    fed.create(10)
    base = flatten(fed.global_params())[0]
    gone = {"site-3", "site-7"}
    fed.drive(fed.round_closed(1), lambda n, s: n in gone and shared(n, s))
    survivors = [n for n in fed.sites if n not in gone]
    got = flatten(fed.global_params())[0] - base
    assert fed.rounds()[0]["updates"] == 8
    assert np.max(np.abs(got - expected_mean(fed, survivors, 0))) < 1e-5
    # the next round runs with everyone again (the dropped sites never sent an input in round 1)
    fed.drive(lambda: fed.status()["state"] == "completed")
    assert fed.rounds()[1]["updates"] == 10


def test_fewer_than_threshold_survivors_abort_the_session_with_a_reason(
    fed: Federation, ctx: Context
) -> None:
    fed.create(5, min_clients=3, max_round_attempts=1)
    gone: set[str] = set()

    def silent(name: str, site: SiteClient) -> bool:
        if name in ("site-1", "site-2", "site-3") and shared(name, site):
            gone.add(name)  # from here on these three never answer again
        return name in gone

    fed.drive(lambda: bool(fed.status()["secure_aggregation"]["last_abort"]), silent)
    session = fed.status()["secure_aggregation"]
    assert "only 2 masked inputs arrived, threshold is 3" in session["last_abort"]
    with ctx.db.session() as s:
        reasons = [
            e.details for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "fl.secagg.abort"))
        ]
    assert "threshold is 3" in reasons[0]
    # the two sites whose inputs reached the aborted session sit the round out, so only the three
    # silent ones are asked again, and the round fails at its deadline with the reason
    assert fed.status()["secure_aggregation"]["members"] == 3
    fed.clock.advance(700)
    status = fed.status()
    assert (
        status["state"] == "failed"
        and "the last secure aggregation session ended" in status["failure_reason"]
    )


def test_the_server_keeps_no_individual_update(fed: Federation, ctx: Context) -> None:
    fed.create(4)
    coordinator = ctx.services.fl_coordinator
    seen: list[dict[str, Any]] = []

    def snapshot(name: str, site: SiteClient) -> bool:
        session = coordinator.secure.session(fed.fid)
        if session is not None and session.stage.value == "mask":
            seen.append({k: v for k, v in vars(session.server).items() if isinstance(v, np.ndarray)})
        return False

    fed.drive(fed.round_closed(1), snapshot)
    # while masked inputs arrived the server held one array: the running masked sum
    assert all(set(arrays) <= {"_masked_sum"} for arrays in seen)
    assert any("_masked_sum" in arrays for arrays in seen)
    with ctx.db.session() as s:
        assert s.scalar(select(func.count(FederationUpdate.id))) == 0
    assert not [a for a in ctx.vault.list() if a.startswith("flu-")]


def test_a_forged_key_advert_is_refused_and_a_substituted_peer_key_is_caught(
    fed: Federation, ctx: Context, client: TestClient
) -> None:
    fed.create(4)
    site = fed.sites["site-1"]
    info = site.info()
    site.step(info)  # trains and advertises
    view = site.secure.secagg_state()
    assert view["stage"] == "advertise" and view["member"]
    # another site's advert signed with a key that is not its registered identity
    other = fed.sites["site-2"]
    other_view = other.secure.secagg_state()
    forged = sign_advert(
        signing.generate_signing_key(), view["session"], other_view["client_id"], bytes(range(32)), bytes(32)
    )
    r = client.post(
        f"{BASE}/{fed.fid}/site/secagg/advertise",
        content=forged.model_dump_json(),
        headers={**other.transport.auth_headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "substitution" in r.json()["error"]["message"]
    # a server that swaps a peer's identity key in the directory is caught by the pinned key
    pid = view["directory"][str(other_view["client_id"])]["participant_id"]
    site.state.data["peer_signing_keys"][pid] = signing.encode_public_key(signing.generate_signing_key())
    site.secure._session = None
    events: list[str] = []
    site.on_event = lambda e: events.append(e.message)
    assert site.secure.handle(view, 1) == "wait_stage"
    assert any("possible key substitution" in m for m in events)


def test_sealed_updates_and_foreign_messages_are_refused(fed: Federation, client: TestClient) -> None:
    fed.create(3)
    site = fed.sites["site-1"]
    site.step(site.info())
    view = site.secure.secagg_state()
    # a sealed update is the wrong protocol for a secure federation
    r = client.post(
        f"{BASE}/{fed.fid}/site/update", content=b"x" * 64, headers=dict(site.transport.auth_headers)
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "secure_aggregation_required"
    # a message naming another client's id
    other_id = next(int(c) for c in view["directory"] if int(c) != view["client_id"])
    bogus = AdvertiseKeys(
        round_id=view["session"],
        client_id=other_id,
        enc_public_key=bytes(32),
        mask_public_key=bytes(32),
        signature=bytes(64),
    )
    headers = {**site.transport.auth_headers, "Content-Type": "application/json"}
    r = client.post(
        f"{BASE}/{fed.fid}/site/secagg/advertise", content=bogus.model_dump_json(), headers=headers
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "participant_mismatch"
    # the same stage twice, a stale session, malformed base64
    mine = bogus.model_copy(update={"client_id": view["client_id"]})
    r = client.post(
        f"{BASE}/{fed.fid}/site/secagg/advertise", content=mine.model_dump_json(), headers=headers
    )
    assert r.status_code == 409
    stale = mine.model_copy(update={"round_id": f"{fed.fid}:9:1.1"})
    r = client.post(
        f"{BASE}/{fed.fid}/site/secagg/advertise", content=stale.model_dump_json(), headers=headers
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "secagg_stale_session"
    r = client.post(
        f"{BASE}/{fed.fid}/site/secagg/masked",
        json={"round_id": view["session"], "client_id": view["client_id"], "masked_vector": "not base64!"},
        headers=dict(site.transport.auth_headers),
    )
    assert r.status_code == 422
    # without a credential, or with another federation's
    assert client.get(f"{BASE}/{fed.fid}/site/secagg").status_code == 401


def test_secagg_routes_on_a_plain_federation_say_so(
    client: TestClient, alice: Caller, tmp_path: Path
) -> None:
    fid = client.post(
        BASE, json={"name": "plain", "model": TINY, "min_clients": 1}, headers=alice.headers
    ).json()["id"]
    token = client.post(f"{BASE}/{fid}/participants", json={"name": "a"}, headers=alice.headers).json()[
        "token"
    ]
    r = client.get(f"{BASE}/{fid}/site/secagg", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "secure_aggregation_off"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"strategy": "krum", "privacy": {"secure_aggregation": {}}}, "needs every individual update"),
        ({"privacy": {"dp": {"clip_norm": 1, "noise_multiplier": 1}}}, "distributed DP noise needs secure"),
        ({"min_clients": 2, "privacy": {"secure_aggregation": {}}}, "min_clients >= 3"),
        (
            {
                "privacy": {
                    "dp": {"clip_norm": 1, "noise_multiplier": 0.5, "mode": "central", "budget_epsilon": 1}
                }
            },
            "above the budget",
        ),
        ({"privacy": {"secure_aggregation": {"neighbours": 1}}}, "greater than or equal to 3"),
    ],
)
def test_bad_privacy_settings_are_refused_with_a_reason(
    client: TestClient, alice: Caller, body: dict[str, Any], needle: str
) -> None:
    payload = {"name": "bad", "model": TINY, "min_clients": 3, **body}
    r = client.post(BASE, json=payload, headers=alice.headers)
    assert r.status_code == 422 and needle in r.text, r.text


def test_a_site_that_never_shows_up_is_left_out_at_the_round_deadline(fed: Federation) -> None:
    fed.create(4, round_timeout_s=600)
    fed.drive(
        lambda: fed.status()["secure_aggregation"]["stage"] == "advertise" and _advertised(fed) == 3,
        lambda n, s: n == "site-4",
    )
    fed.clock.advance(601)  # the round deadline: the session goes on with the three that advertised
    fed.drive(fed.round_closed(1), lambda n, s: n == "site-4")
    assert fed.rounds()[0]["updates"] == 3


def _advertised(fed: Federation) -> int:
    session = fed.status()["secure_aggregation"]
    return int(session["members"]) - int(session["waiting_for"])


def test_a_round_whose_sum_was_lost_in_a_crash_runs_again(fed: Federation, ctx: Context) -> None:
    from sqlalchemy import update

    from bastion.store.tables import FederationRound

    fed.create(3)
    coordinator = ctx.services.fl_coordinator
    with ctx.db.session() as s:  # as if the process died between claiming the round and publishing it
        s.execute(update(FederationRound).values(state="closing"))
    coordinator.secure.forget(fed.fid)
    coordinator.recover()
    rnd = fed.rounds()[0]
    assert rnd["state"] == "open" and rnd["attempt"] == 2
    fed.drive(fed.round_closed(1))
    assert fed.rounds()[0]["updates"] == 3


def test_a_peer_key_list_given_out_of_band_replaces_trust_on_first_use(fed: Federation) -> None:
    from bastion.client.site.state import load_peer_keys

    fed.create(3)
    listing = fed.client.get(f"{BASE}/{fed.fid}/participants", headers=fed.owner.headers).json()["data"]
    good = load_peer_keys(listing)
    assert len(good) == 3
    forged = dict(good)
    victim = next(pid for pid in forged if pid != fed.sites["site-2"].state.data["participant_id"])
    forged[victim] = signing.encode_public_key(signing.generate_signing_key())
    events: list[str] = []
    fed.sites["site-2"].peer_keys = forged
    fed.sites["site-2"].on_event = lambda e: events.append(e.message)
    fed.sites["site-3"].peer_keys = good
    site = fed.sites["site-2"]
    assert site.step(site.info()) == "wait_stage"  # refuses the session: the server's key is not the list's
    assert any("differs from the peer key list" in m for m in events)
    site.peer_keys = {k: v for k, v in good.items() if k != victim}
    site.secure._refused.clear()
    assert site.step(site.info()) == "wait_stage"
    assert any("is not in the peer key list" in m for m in events)
    site.peer_keys = good
    site.secure._refused.clear()
    fed.drive(fed.round_closed(1))
    assert fed.rounds()[0]["updates"] == 3


def test_a_session_takes_only_the_sites_drawn_for_the_round(
    fed: Federation, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed.create(6, min_clients=3, target_clients=3)
    coordinator = ctx.services.fl_coordinator
    drawn = {fed.sites[n].state.data["participant_id"] for n in ("site-1", "site-3", "site-5")}
    monkeypatch.setattr(coordinator, "is_selected", lambda cfg, fid, rnd, pid: pid in drawn)
    for name, site in fed.sites.items():
        info = site.info()
        assert info["selected"] == (name in ("site-1", "site-3", "site-5"))
        site.step(info)
    members = {name for name, site in fed.sites.items() if site.secure.secagg_state()["member"]}
    assert members == {"site-1", "site-3", "site-5"}
    fed.drive(fed.round_closed(1))
    assert fed.rounds()[0]["updates"] == 3
