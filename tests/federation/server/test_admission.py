"""Every bad update is refused with its own code, audited, and leaves the round exactly as it was."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import select

from bastion.crypto import signing
from bastion.errors import BastionError
from bastion.federation.envelope import new_nonce
from bastion.federation.server.admission import DbReplayGuard, MemoryGuard
from bastion.store.tables import AuditEvent, FederationUpdate
from tests.federation.server.support import World


def _flip(message: bytes, at: int) -> bytes:
    out = bytearray(message)
    out[at] ^= 0x01
    return bytes(out)


def test_each_fault_is_refused_with_its_code_and_the_round_is_unaffected(world: World) -> None:
    fid = world.create(min_clients=2, rounds=2)["id"]
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    other_fid = world.create(name="other", min_clients=1)["id"]
    base = world.global_params(fid)
    good = world.seal(a, fid, 1)
    stranger = signing.generate_signing_key()
    nan = {k: v.copy() for k, v in base.items()}
    next(iter(nan.values())).flat[0] = np.nan
    inf = {k: v.copy() for k, v in base.items()}
    next(iter(inf.values())).flat[-1] = np.inf
    wrong_shape = {
        k: (np.zeros((v.shape[0] + 1, *v.shape[1:]), np.float32) if v.ndim == 2 else v)
        for k, v in base.items()
    }
    missing = dict(list(base.items())[1:])

    cases: dict[str, tuple[Callable[[], bytes], int, str]] = {
        "tampered ciphertext": (lambda: _flip(good, len(good) - 100), 401, "bad_signature"),
        "wrong signature": (lambda: world.seal(a, fid, 1, signing_key=stranger), 401, "bad_signature"),
        "other participant's id": (
            lambda: world.seal(a, fid, 1, participant_id=b.identity.participant_id),
            403,
            "participant_mismatch",
        ),
        "other federation": (lambda: world.seal(a, other_fid, 1), 422, "wrong_federation"),
        "future round": (lambda: world.seal(a, fid, 2), 409, "round_not_open"),
        "wrong shapes": (lambda: world.seal(a, fid, 1, wrong_shape), 422, "tensor_shape"),
        "missing tensor": (lambda: world.seal(a, fid, 1, missing), 422, "tensor_missing"),
        "NaN": (lambda: world.seal(a, fid, 1, nan), 422, "non_finite"),
        "Inf": (lambda: world.seal(a, fid, 1, inf), 422, "non_finite"),
        "oversized": (lambda: good + b"\0" * 200_000, 413, "update_too_large"),
        "garbage": (lambda: b"not an update at all, certainly not a pickle", 400, "malformed_update"),
        "pickle": (lambda: b"\x80\x04\x95" + b"\0" * 80, 400, "malformed_update"),
    }
    for label, (make, status, code) in cases.items():
        with pytest.raises(BastionError) as info:
            world.submit(a, make())
        assert (info.value.status_code, info.value.code) == (status, code), label

    assert world.status(fid)["pending_updates"] == 0, "no refused update touched the round"
    with world.ctx.db.session() as s:
        denials = [
            json.loads(d)["reason"]
            for d in s.scalars(
                select(AuditEvent.details).where(
                    AuditEvent.action == "fl.update", AuditEvent.outcome == "denied"
                )
            )
        ]
        assert s.scalar(select(FederationUpdate.id)) is None
    assert sorted(denials) == sorted(code for _m, _s, code in cases.values())

    # the same site's genuine update is still welcome afterwards
    assert world.submit(a, good)["pending_updates"] == 1


def test_replays_and_duplicates_are_refused_before_decryption(world: World) -> None:
    fid = world.create(min_clients=3)["id"]
    a, _b, _c = world.enroll(fid, "a"), world.enroll(fid, "b"), world.enroll(fid, "c")
    message = world.seal(a, fid, 1)
    world.submit(a, message)
    with pytest.raises(BastionError) as replay:
        world.submit(a, message)
    assert (replay.value.status_code, replay.value.code) == (409, "replayed_update")
    with pytest.raises(BastionError) as dup:
        world.submit(a, world.seal(a, fid, 1, nonce=new_nonce()))
    assert (dup.value.status_code, dup.value.code) == (409, "duplicate_update")
    assert world.status(fid)["pending_updates"] == 1


def test_database_refuses_a_duplicate_that_slipped_past_the_precheck(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two racing requests both pass the pre-decryption check; the unique constraint stops the second."""
    fid = world.create(min_clients=3)["id"]
    a, _b, _c = world.enroll(fid, "a"), world.enroll(fid, "b"), world.enroll(fid, "c")
    first, second = world.seal(a, fid, 1), world.seal(a, fid, 1)
    monkeypatch.setattr(DbReplayGuard, "check", lambda *args, **kwargs: None)
    monkeypatch.setattr(MemoryGuard, "check", lambda *args, **kwargs: None)
    world.submit(a, first)
    with pytest.raises(BastionError) as info:
        world.submit(a, second)
    assert info.value.code == "duplicate_update"
    assert world.status(fid)["pending_updates"] == 1
    stored = world.coordinator.records.names(f"flu-{fid}")
    assert len(stored) == 1, "the refused update's vault copy was removed"


def test_unregistered_site_and_updates_for_closed_rounds(world: World) -> None:
    fid = world.create(min_clients=1, target_clients=1, rounds=3)["id"]
    a = world.enroll(fid, "a")
    silent = world.enroll(fid, "silent", register=False)
    with pytest.raises(BastionError) as info:
        world.submit(silent, world.seal(silent, fid, 1))
    assert (info.value.status_code, info.value.code) == (403, "key_not_registered")
    stale = world.seal(a, fid, 1, nonce=new_nonce())
    world.submit(a, world.seal(a, fid, 1))
    with pytest.raises(BastionError) as late:
        world.submit(a, stale)
    assert (late.value.status_code, late.value.code) == (409, "round_closed")
    assert world.status(fid)["round"] == 2 and world.status(fid)["pending_updates"] == 0
