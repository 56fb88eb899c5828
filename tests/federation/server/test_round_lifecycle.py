"""Rounds close at quorum or deadline, retry when short, fail with a reason, and publish each model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from bastion.errors import Conflict
from bastion.federation.server.hooks import RoundHooks
from bastion.store.tables import AuditEvent
from tests.federation.server.support import FakeClock, World


def test_quorum_closes_round_with_the_weighted_average(world: World) -> None:
    fed = world.create(min_clients=2, rounds=2)
    fid = fed["id"]
    assert fed["state"] == "waiting" and fed["current_round"] == 1
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    assert world.status(fid)["state"] == "running", "round 1's clock starts once min_clients are registered"
    base = world.global_params(fid)
    ta = {k: v + 1.0 for k, v in base.items()}
    tb = {k: v - 2.0 for k, v in base.items()}

    first = world.submit(a, world.seal(a, fid, 1, ta, num_samples=30))
    assert first["accepted"] and first["pending_updates"] == 1
    status = world.status(fid)
    assert (status["round"], status["pending_updates"], status["required_updates"]) == (1, 1, 2)

    world.submit(
        b, world.seal(b, fid, 1, tb, num_samples=10, metrics={"val_accuracy": 0.5, "val_num_samples": 30.0})
    )
    status = world.status(fid)
    assert (status["round"], status["pending_updates"], status["round_state"]) == (2, 0, "open")

    new = world.global_params(fid)
    for name, arr in base.items():
        np.testing.assert_allclose(
            new[name], (30 * (arr + 1.0) + 10 * (arr - 2.0)) / 40, rtol=1e-6, atol=1e-6
        )
    closed = world.rounds(fid)[0]
    assert closed["state"] == "closed" and closed["close_reason"] == "quorum" and closed["updates"] == 2
    metrics = closed["metrics"]
    assert metrics["num_updates"] == 2 and metrics["num_samples"] == 40
    # val_* metrics are weighted by each site's validation size (5 and 30), not by training samples
    assert metrics["val_accuracy"] == pytest.approx((5 * 0.75 + 30 * 0.5) / 35)
    assert metrics["train_loss"] == pytest.approx(0.5)
    assert closed["model_version"] == 2, "each global model version lands in the model registry"
    registry = world.ctx.services.models
    versions = registry.get(world.owner, "fl-fed")["history"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["lineage"]["round"] == 1 and versions[1]["metrics"]["num_updates"] == 2


def test_federation_completes_after_its_rounds(world: World) -> None:
    fid = world.create(min_clients=1, rounds=2)["id"]
    site = world.enroll(fid, "solo")
    for number in (1, 2):
        world.submit(site, world.seal(site, fid, number))
    status = world.status(fid)
    assert status["state"] == "completed" and status["completed_rounds"] == 2
    with pytest.raises(Conflict) as info:
        world.submit(site, world.seal(site, fid, 3))
    assert info.value.code == "federation_finished"
    with world.ctx.db.session() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.target_id == fid)))
    assert actions.count("fl.round.close") == 2 and "fl.federation.complete" in actions


def test_deadline_closes_a_round_that_has_min_clients(world: World, clock: FakeClock) -> None:
    fid = world.create(min_clients=2, target_clients=3, round_timeout_s=60)["id"]
    a, b, _c = world.enroll(fid, "a"), world.enroll(fid, "b"), world.enroll(fid, "c")
    world.submit(a, world.seal(a, fid, 1))
    world.submit(b, world.seal(b, fid, 1))
    assert world.status(fid)["round"] == 1, "target (3) not reached: the round stays open"
    clock.advance(59)
    assert world.coordinator.tick() == 0
    clock.advance(2)
    assert world.coordinator.tick() == 1
    first = world.rounds(fid)[0]
    assert first["state"] == "closed" and first["close_reason"] == "deadline" and first["updates"] == 2
    assert world.status(fid)["round"] == 2


def test_short_round_is_retried_then_fails_with_a_reason(world: World, clock: FakeClock) -> None:
    fid = world.create(min_clients=2, round_timeout_s=30, max_round_attempts=2)["id"]
    a, _b = world.enroll(fid, "a"), world.enroll(fid, "b")
    world.submit(a, world.seal(a, fid, 1))
    clock.advance(31)
    world.coordinator.tick()
    status = world.status(fid)
    assert status["state"] == "running" and status["attempt"] == 2 and status["pending_updates"] == 1, (
        "a retry keeps the updates the round already has"
    )
    clock.advance(31)
    world.coordinator.tick()
    status = world.status(fid)
    assert status["state"] == "failed"
    assert "received 1 of the 2 updates" in status["failure_reason"]
    assert world.rounds(fid)[0]["state"] == "failed"
    with pytest.raises(Conflict):
        world.submit(a, world.seal(a, fid, 1))


def test_requests_also_enforce_the_deadline(world: World, clock: FakeClock) -> None:
    """No ticker running here: a late update itself triggers the close and is refused as late."""
    fid = world.create(min_clients=1, target_clients=2, round_timeout_s=10)["id"]
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    world.submit(a, world.seal(a, fid, 1))
    clock.advance(11)
    late = world.seal(b, fid, 1)
    with pytest.raises(Conflict) as info:
        world.submit(b, late)
    assert info.value.code == "round_closed"
    assert world.rounds(fid)[0]["close_reason"] == "deadline"
    assert world.status(fid)["pending_updates"] == 0


def test_round_one_waits_for_min_clients_to_register(world: World, clock: FakeClock) -> None:
    fid = world.create(min_clients=2, round_timeout_s=5)["id"]
    world.enroll(fid, "a")
    clock.advance(3600)
    world.coordinator.tick()
    status = world.status(fid)
    assert status["state"] == "waiting" and status["deadline"] is None and status["attempt"] == 1


def test_a_close_that_breaks_is_finished_by_the_ticker(world: World) -> None:
    """An unexpected error while aggregating neither loses the updates nor wedges the federation."""
    fid = world.create(min_clients=2, rounds=2)["id"]
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    failures = []

    class Flaky(RoundHooks):
        def on_aggregate(self, federation_id: str, round: int, params: dict[str, Any]) -> dict[str, Any]:
            if not failures:
                failures.append(round)
                raise RuntimeError("disk on fire")
            return params

    world.coordinator.hooks = Flaky()
    world.submit(a, world.seal(a, fid, 1))
    assert world.submit(b, world.seal(b, fid, 1))["accepted"], "the update itself was admitted"
    assert world.rounds(fid)[0]["state"] == "closing"
    world.coordinator.tick()
    first = world.rounds(fid)[0]
    assert (first["state"], first["close_reason"], first["updates"]) == ("closed", "recovered", 2)
    assert world.status(fid)["round"] == 2 and failures == [1]


def test_a_registry_failure_inside_the_close_rolls_back_only_the_registration(world: World) -> None:
    """The version is registered in the close's transaction, in its own savepoint: a failure there
    (after the version row was written) leaves the round closed, the next one open, no version, and
    an audit chain that still verifies."""
    from bastion.audit import AuditLog, AuditRecord
    from bastion.audit.verify import verify_chain
    from bastion.store.tables import ModelVersionRecord

    fid = world.create(min_clients=1, rounds=3)["id"]
    site = world.enroll(fid, "solo")
    registry = world.ctx.services.models

    class Broken(AuditLog):
        def append(self, record: AuditRecord, session: Any = None) -> int:
            raise RuntimeError("registry audit unavailable")

    registry.audit = Broken(world.ctx.db)
    world.submit(site, world.seal(site, fid, 1))
    closed = world.rounds(fid)[0]
    assert (closed["state"], closed["model_version"]) == ("closed", None)
    assert world.status(fid)["round"] == 2
    with world.ctx.db.session() as s:
        versions = s.scalars(select(ModelVersionRecord.version)).all()
    assert list(versions) == [1], "only the initial model's version: the failed one was rolled back"
    assert verify_chain(world.ctx.db).ok
    registry.audit = world.ctx.audit
    world.submit(site, world.seal(site, fid, 2))
    assert world.rounds(fid)[1]["model_version"] == 2, "the next close registers again"
