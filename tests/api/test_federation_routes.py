"""Federation routes over HTTP: coordinator routes (user auth, owner-scoped) and site routes (bsp_ tokens)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bastion.client.site.base import FitResult, SiteError, SiteTrainer
from bastion.client.site.runtime import SiteClient
from bastion.crypto import signing
from tests.conftest import Caller

BASE = "/api/v1/federations"
TINY = {"type": "tabular_mlp", "in_features": 4, "num_classes": 2, "hidden": [3]}


class ShiftTrainer(SiteTrainer):
    """A numpy-only 'training loop': moves every parameter by ``shift`` (custom-loop hook example)."""

    def __init__(self, shift: float, samples: int) -> None:
        self.shift, self.samples = shift, samples
        self.configs: list[Mapping[str, Any]] = []

    def fit(self, params: dict[str, np.ndarray], config: Mapping[str, Any]) -> FitResult:
        self.configs.append(config)
        return FitResult(
            {k: v + self.shift for k, v in params.items()}, self.samples, {"train_loss": self.shift}
        )

    def evaluate(self, params: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, float]:
        return {"val_accuracy": 0.5 + self.shift / 10, "val_num_samples": 10.0}


def create(client: TestClient, caller: Caller, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": "fed", "model": TINY, "rounds": 2, "min_clients": 2}
    payload.update(body)
    r = client.post(BASE, json=payload, headers=caller.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def enroll(client: TestClient, caller: Caller, fid: str, name: str) -> dict[str, Any]:
    r = client.post(f"{BASE}/{fid}/participants", json={"name": name}, headers=caller.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def site(
    client: TestClient, fid: str, token: str, trainer: SiteTrainer, tmp_path: Path, name: str
) -> SiteClient:
    return SiteClient(
        "http://testserver",
        fid,
        token,
        trainer,
        state_dir=tmp_path / name,
        http=TestClient(client.app),
        poll_timeout=0.2,
    )


def test_coordinator_routes_and_owner_scoping(
    client: TestClient, alice: Caller, bob: Caller, viewer: Caller
) -> None:
    fed = create(client, alice)
    fid = fed["id"]
    assert fed["state"] == "waiting" and fed["strategy"] == "fedavg" and len(fed["history"]) == 1
    assert [f["id"] for f in client.get(BASE, headers=alice.headers).json()["data"]] == [fid]
    assert client.get(BASE, headers=bob.headers).json()["data"] == []
    status = client.get(f"{BASE}/{fid}/status", headers=alice.headers).json()
    assert {
        "round": 1,
        "pending_updates": 0,
        "required_updates": 2,
        "clients_online": 0,
    }.items() <= status.items()
    rounds = client.get(f"{BASE}/{fid}/rounds", headers=alice.headers).json()["data"]
    assert rounds[0]["round"] == 1 and rounds[0]["state"] == "open"
    model = client.get(f"{BASE}/{fid}/model", headers=alice.headers)
    assert model.status_code == 200 and model.headers["x-bastion-global-version"] == "1"

    for method, path in [
        ("GET", f"{BASE}/{fid}"),
        ("GET", f"{BASE}/{fid}/status"),
        ("GET", f"{BASE}/{fid}/rounds"),
        ("GET", f"{BASE}/{fid}/participants"),
        ("POST", f"{BASE}/{fid}/participants"),
        ("GET", f"{BASE}/{fid}/model"),
        ("POST", f"{BASE}/{fid}/model"),
        ("DELETE", f"{BASE}/{fid}/participants/anything"),
    ]:
        kwargs: dict[str, Any] = (
            {"json": {"name": "x"}} if path.endswith("participants") and method == "POST" else {}
        )
        if path.endswith("/model") and method == "POST":
            kwargs = {"content": model.content}
        r = client.request(method, path, headers=bob.headers, **kwargs)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), (method, path)
    assert client.get(f"{BASE}/{fid}").status_code == 401
    assert client.post(BASE, json={"name": "v", "model": TINY}, headers=viewer.headers).status_code == 403


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"strategy": "fedmagic"}, "unknown_strategy"),
        ({"strategy": "fedadam", "strategy_options": {"eta": -1}}, "invalid_strategy_options"),
        (
            {"strategy": "krum", "strategy_options": {"num_byzantine": 1}, "min_clients": 3},
            "invalid_strategy_options",
        ),
        ({"model": {"type": "tabular_mlp", "in_features": 0, "num_classes": 2}}, "invalid_model_config"),
        ({"model": {"type": "unpickle_me"}}, "invalid_model_config"),
        ({"min_clients": 3, "target_clients": 2}, "validation_error"),
        ({"evaluation": {"server_dataset": "/etc/passwd"}}, "validation_error"),
        ({"evaluation": {"server_dataset": "builtin:nope"}}, "invalid"),
        ({"name": "../../etc"}, "validation_error"),
    ],
)
def test_create_refuses_bad_specs(client: TestClient, alice: Caller, body: dict[str, Any], code: str) -> None:
    payload: dict[str, Any] = {"name": "fed", "model": TINY, **body}
    r = client.post(BASE, json=payload, headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text


def test_duplicate_names_and_participants_conflict(client: TestClient, alice: Caller) -> None:
    fid = create(client, alice)["id"]
    assert client.post(BASE, json={"name": "fed", "model": TINY}, headers=alice.headers).status_code == 409
    enroll(client, alice, fid, "site-a")
    r = client.post(f"{BASE}/{fid}/participants", json={"name": "site-a"}, headers=alice.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "participant_exists")


def test_site_credentials(client: TestClient, alice: Caller, admin: Caller) -> None:
    fid = create(client, alice)["id"]
    other = create(client, alice, name="other")["id"]
    a = enroll(client, alice, fid, "a")
    token = a["token"]
    assert token.startswith("bsp_") and a["server_signing_key"]
    listed = client.get(f"{BASE}/{fid}/participants", headers=alice.headers).json()["data"]
    assert token not in str(listed) and listed[0]["credential_prefix"] == token[:10], (
        "the token is shown once"
    )

    def info(headers: dict[str, str], federation: str = fid) -> Any:
        return client.get(f"{BASE}/{federation}/site/info", headers=headers)

    bearer = {"Authorization": f"Bearer {token}"}
    assert info(bearer).status_code == 200
    for headers, federation, code in [
        ({}, fid, "missing_credentials"),
        ({"Authorization": "Bearer bsp_" + "A" * 38}, fid, "unknown_participant"),
        (bearer, other, "unknown_participant"),
        (alice.headers | {"Authorization": f"Bearer {alice.key}"}, fid, "unknown_participant"),
        ({"Authorization": f"Basic {token}"}, fid, "bad_auth_scheme"),
    ]:
        r = info(headers, federation)
        assert (r.status_code, r.json()["error"]["code"]) == (401, code), headers
    assert client.get(f"{BASE}/{fid}", headers={"X-API-Key": token}).status_code == 401, "not a user key"

    key = signing.encode_public_key(signing.generate_signing_key())
    assert (
        client.post(
            f"{BASE}/{fid}/site/register", json={"signing_public_key": key}, headers=bearer
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"{BASE}/{fid}/site/register", json={"signing_public_key": key}, headers=bearer
        ).status_code
        == 200
    )
    again = signing.encode_public_key(signing.generate_signing_key())
    r = client.post(f"{BASE}/{fid}/site/register", json={"signing_public_key": again}, headers=bearer)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "signing_key_mismatch")
    r = client.post(f"{BASE}/{fid}/site/register", json={"signing_public_key": "x" * 43}, headers=bearer)
    assert r.status_code == 422

    revoked = client.delete(f"{BASE}/{fid}/participants/{a['id']}", headers=alice.headers).json()
    assert revoked["revoked_at"] is not None
    r = info(bearer)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "participant_revoked")
    audit = client.get("/api/v1/admin/audit?action=fl.&outcome=denied", headers=admin.headers).json()["data"]
    reasons = {e["details"]["reason"] for e in audit}
    assert {
        "unknown_participant",
        "missing_credentials",
        "participant_revoked",
        "signing_key_mismatch",
    } <= reasons


def test_failed_site_tokens_slow_their_address_down(client: TestClient, alice: Caller) -> None:
    """Like logins: past the threshold each wrong token waits longer; a valid token is never slowed."""
    from bastion.api.routes.federation_site import _authenticate
    from bastion.errors import RateLimited, Unauthorized

    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    fid = create(client, alice)["id"]
    token = enroll(client, alice, fid, "a")["token"]
    delays: list[float] = []
    for _ in range(ctx.settings.max_failed_attempts + 2):
        try:
            _authenticate(ctx, fid, "bsp_" + "B" * 38, "198.51.100.30", "fl.site.auth")
        except Unauthorized as exc:
            delays.append(exc.slow_down)
        except RateLimited:
            break
    threshold = ctx.settings.max_failed_attempts
    assert delays[: threshold - 1] == [0.0] * (threshold - 1)
    assert 0 < delays[threshold - 1] < delays[threshold] <= 4, delays
    site = _authenticate(ctx, fid, token, "198.51.100.30", "fl.site.auth")
    assert site.federation_id == fid


def test_rounds_over_http_with_custom_training_hooks(
    client: TestClient, alice: Caller, tmp_path: Path
) -> None:
    fid = create(client, alice, rounds=2, training={"epochs": 3, "lr": 0.01})["id"]
    trainers = {"a": ShiftTrainer(1.0, 30), "b": ShiftTrainer(3.0, 10)}
    sites = {
        n: site(client, fid, enroll(client, alice, fid, n)["token"], t, tmp_path, n)
        for n, t in trainers.items()
    }
    start = np.concatenate([v.ravel() for v in _global(client, alice, fid).values()])
    for s in sites.values():
        s.join()
    for number in (1, 2):
        for s in sites.values():
            assert s.train_and_send() == "sent"
        status = client.get(f"{BASE}/{fid}/status", headers=alice.headers).json()
        assert status["completed_rounds"] == number
    assert status["state"] == "completed"
    end = np.concatenate([v.ravel() for v in _global(client, alice, fid).values()])
    np.testing.assert_allclose(end - start, 2 * (30 * 1.0 + 10 * 3.0) / 40, atol=1e-5)
    config = trainers["a"].configs[0]
    assert config["training"]["epochs"] == 3 and config["round"] == 1 and config["model"] == TINY
    rounds = client.get(f"{BASE}/{fid}/rounds", headers=alice.headers).json()["data"]
    assert [r["close_reason"] for r in rounds] == ["quorum", "quorum"]
    assert rounds[0]["metrics"]["val_accuracy"] == pytest.approx((0.6 + 0.8) / 2)
    assert sites["a"].run()["state"] == "completed", "a finished federation ends the site loop at once"
    sent = sites["a"].state.data["sent_rounds"]
    assert sent == [1, 2]


def test_site_resumes_and_long_polls(client: TestClient, alice: Caller, tmp_path: Path) -> None:
    fid = create(client, alice, rounds=1)["id"]
    tokens = [enroll(client, alice, fid, n)["token"] for n in "ab"]
    first = site(client, fid, tokens[0], ShiftTrainer(1.0, 5), tmp_path, "a")
    first.join()
    assert first.train_and_send() == "sent"
    waited = first.info(wait_round=1)
    assert waited["round"] == 1 and waited["submitted"], "nothing changed during the long poll"
    # a restarted site (same state dir) knows round 1 was sent and does not train again
    again = site(client, fid, tokens[0], ShiftTrainer(9.0, 5), tmp_path, "a")
    assert again.state.sent(1) and again.train_and_send() == "already_sent"
    second = site(client, fid, tokens[1], ShiftTrainer(1.0, 5), tmp_path, "b")
    second.join()
    second.train_and_send()
    assert first.info(wait_round=1)["state"] == "completed"


def test_a_long_poll_is_woken_by_the_round_closing(client: TestClient, alice: Caller, tmp_path: Path) -> None:
    """The waiting request sleeps on the coordinator's epoch (no polling) and answers at the close."""
    fid = create(client, alice, rounds=2)["id"]
    first, second = (
        site(client, fid, enroll(client, alice, fid, n)["token"], ShiftTrainer(1.0, 5), tmp_path, n)
        for n in "ab"
    )
    for s in (first, second):
        s.join()
    assert first.train_and_send() == "sent"
    first.poll_timeout = 30.0  # far longer than this test may take: only the close can end the wait
    answers: list[dict[str, Any]] = []
    poller = threading.Thread(target=lambda: answers.append(first.info(wait_round=1)))
    poller.start()
    epochs = client.app.state.ctx.services.fl_coordinator.epochs  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while epochs.waiting(fid) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert epochs.waiting(fid) == 1, "the long poll waits on the epoch"
    assert second.train_and_send() == "sent"  # the quorum: round 1 closes, round 2 opens
    poller.join(20)
    assert not poller.is_alive() and answers[0]["round"] == 2 and answers[0]["round_state"] == "open"
    assert epochs.waiting(fid) == 0


def test_server_key_pinning(client: TestClient, alice: Caller, tmp_path: Path) -> None:
    fid = create(client, alice, rounds=1)["id"]
    token = enroll(client, alice, fid, "a")["token"]
    wrong = signing.encode_public_key(signing.generate_signing_key())
    pinned = SiteClient(
        "http://testserver",
        fid,
        token,
        ShiftTrainer(1, 1),
        state_dir=tmp_path / "pin",
        server_key=wrong,
        http=TestClient(client.app),
    )
    with pytest.raises(SiteError) as info:
        pinned.join()
    assert info.value.code == "server_key_changed"


def test_oversized_and_malformed_updates_over_http(client: TestClient, alice: Caller, admin: Caller) -> None:
    fid = create(client, alice)["id"]
    token = enroll(client, alice, fid, "a")["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    client.post(
        f"{BASE}/{fid}/site/register",
        headers=bearer,
        json={"signing_public_key": signing.encode_public_key(signing.generate_signing_key())},
    )
    r = client.post(f"{BASE}/{fid}/site/update", content=b"\0" * 300_000, headers=bearer)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "update_too_large")
    r = client.post(f"{BASE}/{fid}/site/update", content=b"BSTU junk", headers=bearer)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_update")
    audit = client.get("/api/v1/admin/audit?action=fl.update&outcome=denied", headers=admin.headers).json()
    assert sorted(e["details"]["reason"] for e in audit["data"]) == ["malformed_update", "update_too_large"]
    r = client.post(f"{BASE}/{fid}/model", content=b"\0" * 300_000, headers=alice.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "model_too_large")


def _global(client: TestClient, caller: Caller, fid: str) -> dict[str, np.ndarray]:
    from bastion.federation.tensors import decode

    return decode(client.get(f"{BASE}/{fid}/model", headers=caller.headers).content)


def test_an_accepted_update_is_audited_once_and_a_refused_one_by_the_gateway_too(
    client: TestClient, alice: Caller, ctx: Any, tmp_path: Path
) -> None:
    import json

    from sqlalchemy import select

    from bastion.store.tables import AuditEvent

    fid = create(client, alice, min_clients=2, rounds=1)["id"]
    token = enroll(client, alice, fid, "a")["token"]
    enroll(client, alice, fid, "b")
    a = site(client, fid, token, ShiftTrainer(0.1, 10), tmp_path, "a")
    a.join()
    assert a.train_and_send() == "sent"
    refused = client.post(
        f"{BASE}/{fid}/site/update", content=b"not an update", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code >= 400
    with ctx.db.session() as s:
        rows = [
            (e.action, e.outcome, json.loads(e.details))
            for e in s.scalars(
                select(AuditEvent).where(
                    AuditEvent.target_id.in_([fid, f"{BASE}/{{federation_id}}/site/update"])
                )
            )
        ]
    assert [(act, out) for act, out, _ in rows if act == "fl.update"] == [
        ("fl.update", "success"),
        ("fl.update", "denied"),
    ]
    generic = [(out, d["status"]) for act, out, d in rows if act == "http.post"]
    assert generic == [("failure", refused.status_code)] or generic == [("denied", refused.status_code)]


def test_a_site_not_drawn_for_a_round_waits_instead_of_sending(
    client: TestClient, alice: Caller, tmp_path: Path
) -> None:
    privacy = {"dp": {"clip_norm": 1.0, "noise_multiplier": 1.0, "mode": "central", "sampling_rate": 0.5}}
    fid = create(client, alice, min_clients=1, target_clients=8, rounds=1, privacy=privacy)["id"]
    for i in range(8):
        token = enroll(client, alice, fid, f"s{i}")["token"]
        s = site(client, fid, token, ShiftTrainer(0.1, 10), tmp_path, f"s{i}")
        s.join()
        info = s.info()
        assert s.step(info) == ("sent" if info["selected"] else "wait_round")
