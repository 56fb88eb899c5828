"""Federations end to end: a real `bastion serve`, real `bastion fl client` processes, real faults."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bastion.crypto import sealed, signing
from bastion.federation.envelope import new_nonce, seal_update
from bastion.federation.global_model import GlobalModel, verify_global_model
from tests.conftest import ServerProcess
from tests.e2e.support import Sites, UpdateGate, cli, status, wait_for

pytestmark = pytest.mark.e2e
MODEL = json.dumps({"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [8]})


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Sites]:
    s = Sites(tmp_path)
    yield s
    s.kill_all()


class Intruder:
    """The test playing an enrolled site by hand, to send every kind of bad update over the wire."""

    def __init__(self, server: ServerProcess, fid: str, token: str) -> None:
        self.url = f"{server.url}/api/v1/federations/{fid}/site"
        self.fid, self.headers = fid, {"Authorization": f"Bearer {token}"}
        self.key = signing.generate_signing_key()
        info = httpx.post(
            self.url + "/register",
            headers=self.headers,
            json={"signing_public_key": signing.encode_public_key(self.key)},
        ).json()
        self.pid = info["participant_id"]
        model = GlobalModel.from_bytes(httpx.get(self.url + "/model", headers=self.headers).content)
        server_key = signing.decode_public_key(info["server_signing_key"])
        self.params = dict(verify_global_model(server_key, model, federation_id=fid, round=1))
        self.sealing = sealed.decode_public_key(model.config["server_sealing_key"])

    def seal(self, tensors: dict[str, np.ndarray] | None = None, **kw: Any) -> bytes:
        args: dict[str, Any] = {
            "federation_id": self.fid,
            "round": 1,
            "participant_id": self.pid,
            "num_samples": 50,
            "server_public_key": self.sealing,
            "signing_key": self.key,
        }
        args.update(kw)
        return seal_update(self.params if tensors is None else tensors, **args)

    def send(self, message: bytes, headers: dict[str, str] | None = None) -> tuple[int, str | None]:
        r = httpx.post(self.url + "/update", content=message, headers=headers or self.headers, timeout=30)
        return r.status_code, (r.json().get("error") or {}).get("code")


def test_faults_are_refused_and_a_killed_site_does_not_stall_rounds(
    server_factory: Callable[..., ServerProcess], sites: Sites
) -> None:
    server = server_factory().start()
    fed = cli(
        server,
        "create",
        "e2e",
        "--model",
        MODEL,
        "--rounds",
        "3",
        "--min-clients",
        "1",
        "--target-clients",
        "2",
        "--round-timeout",
        "4",
        "--max-attempts",
        "5",
        "--lr",
        "0.1",
    )
    fid = fed["id"]
    tokens = {n: cli(server, "enroll", fid, "--name", n)["token"] for n in ("a", "c")}
    # c reaches the server through a gate that lets one accepted update through and holds the next;
    # c is killed once it has logged that update sent, so every later round must close at its
    # deadline with a's update alone, however fast or slow this machine is
    gate = UpdateGate(server, updates=1)
    sites.start(server, fid, "a", tokens["a"], "1/2")
    sites.start(server, fid, "c", tokens["c"], "2/2", via=gate.url)
    wait_for("site c's first update", lambda: sites.sent("c"), timeout=240, poll=0.05)
    sites.procs["c"].send_signal(signal.SIGKILL)
    sites.procs["c"].wait()
    gate.close()
    sent_by_c = sites.sent("c")

    # -- while a finishes, every kind of bad update against a second federation, over the wire
    faults = cli(server, "create", "faults", "--model", MODEL, "--rounds", "2", "--min-clients", "2")["id"]
    x = Intruder(server, faults, cli(server, "enroll", faults, "--name", "x")["token"])
    y = Intruder(server, faults, cli(server, "enroll", faults, "--name", "y")["token"])
    good = x.seal()
    nan = {k: v.copy() for k, v in x.params.items()}
    nan["net.0.weight"][0, 0] = np.nan
    tampered = bytearray(good)
    tampered[-200] ^= 1
    shapes = {**x.params, "net.0.weight": np.zeros((9, 64), np.float32)}
    stranger = {"Authorization": "Bearer bsp_" + "Q" * 38}
    expected = {
        "tampered ciphertext": (x.send(bytes(tampered)), (401, "bad_signature")),
        "wrong signature": (
            x.send(x.seal(signing_key=signing.generate_signing_key())),
            (401, "bad_signature"),
        ),
        "unknown participant": (x.send(good, stranger), (401, "unknown_participant")),
        "wrong shapes": (x.send(x.seal(shapes)), (422, "tensor_shape")),
        "NaN": (x.send(x.seal(nan)), (422, "non_finite")),
        "oversized": (x.send(good + b"\0" * 100_000), (413, "update_too_large")),
    }
    for label, (got, want) in expected.items():
        assert got == want, label
    assert status(server, faults)["pending_updates"] == 0, "refused updates leave the round as it was"
    assert x.send(good) == (202, None)
    assert x.send(good) == (409, "replayed_update")
    assert x.send(x.seal(nonce=new_nonce())) == (409, "duplicate_update")
    late = y.seal()
    assert status(server, faults)["pending_updates"] == 1
    assert y.send(y.seal()) == (202, None)
    assert status(server, faults)["round"] == 2
    assert y.send(late) == (409, "round_closed")
    audit = httpx.get(
        f"{server.url}/api/v1/admin/audit",
        params={"action": "fl.update", "outcome": "denied"},
        headers={"X-API-Key": server.keys["admin"]},
    ).json()["data"]
    reasons = sorted(e["details"]["reason"] for e in audit)
    assert reasons == sorted(
        [
            "bad_signature",
            "bad_signature",
            "unknown_participant",
            "tensor_shape",
            "non_finite",
            "update_too_large",
            "replayed_update",
            "duplicate_update",
            "round_closed",
        ]
    )

    # -- the real sites: rounds c took part in closed at quorum; the others at their deadlines
    assert sites.wait("a") == 0, sites.log("a")
    final = cli(server, "status", fid)
    assert final["state"] == "completed" and final["completed_rounds"] == 3
    rounds = cli(server, "rounds", fid)
    assert [r["state"] for r in rounds] == ["closed"] * 3
    assert len(sent_by_c) == 1 and sent_by_c[0] < 3
    for r in rounds:
        closed_as = ("quorum", 2) if r["round"] in sent_by_c else ("deadline", 1)
        assert (r["close_reason"], r["updates"]) == closed_as, rounds
    assert all(r["metrics"]["val_accuracy"] > 0 for r in rounds)
    events = [json.loads(line) for line in sites.log("a").splitlines() if line.startswith("{")]
    assert {"joined", "training", "sent", "completed"} <= {e["event"] for e in events}


def test_server_restart_mid_round_resumes_from_persisted_state(
    server_factory: Callable[..., ServerProcess], sites: Sites
) -> None:
    """SQLite only: the service-level restart tests cover PostgreSQL; each run here costs real processes."""
    server = server_factory().start()
    fid = cli(
        server,
        "create",
        "restart",
        "--model",
        MODEL,
        "--rounds",
        "2",
        "--min-clients",
        "2",
        "--round-timeout",
        "300",
    )["id"]
    tokens = {n: cli(server, "enroll", fid, "--name", n)["token"] for n in ("a", "b")}
    sites.start(server, fid, "a", tokens["a"], "1/2")
    wait_for("site a's round-1 update", lambda: status(server, fid)["pending_updates"] == 1)

    # b starts now: it cannot send before it has prepared and registered, by which time the first
    # server is gone; it rides out the restart with its backoff like a does.
    sites.start(server, fid, "b", tokens["b"], "2/2")
    assert server.stop() in (0, -signal.SIGTERM)
    again = ServerProcess(server.data_dir, server.env, server.args, port=server.port).start()
    assert again.keys == {}, "a restart prints no keys"
    again.keys = server.keys
    try:
        for name in ("a", "b"):
            assert sites.wait(name) == 0, sites.log(name)
        rounds = httpx.get(
            f"{again.url}/api/v1/federations/{fid}/rounds", headers={"X-API-Key": again.keys["user"]}
        ).json()["data"]
        assert [(r["state"], r["updates"]) for r in rounds] == [("closed", 2), ("closed", 2)], (
            "round 1 closed with a's pre-restart update (re-folded from the vault) and b's"
        )
        accepted = httpx.get(
            f"{again.url}/api/v1/admin/audit",
            params={"action": "fl.update", "outcome": "success"},
            headers={"X-API-Key": again.keys["admin"]},
        ).json()["data"]
        assert sorted((e["actor"], e["details"]["round"]) for e in accepted) == [
            ("site:a", 1),
            ("site:a", 2),
            ("site:b", 1),
            ("site:b", 2),
        ]
        sent_a = json.loads((sites.tmp / "state-a" / "state.json").read_text())["sent_rounds"]
        assert sent_a == [1, 2], "site a resumed after the outage without sending round 1 twice"
        assert any(
            json.loads(line).get("event") == "retry"
            for line in sites.log("a").splitlines()
            if line.startswith("{")
        ), "site a saw the outage and retried"
    finally:
        again.stop()
