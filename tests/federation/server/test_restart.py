"""A restarted server resumes the open round from what it persisted: vault copies and round rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import select, update

from bastion.config import Settings
from bastion.context import Context, build_context
from bastion.federation.strategies import create_strategy
from bastion.store.tables import FederationRound, FederationUpdate
from bastion.wiring import install_services
from tests.federation.server.support import Site, World, principal_for


@contextmanager
def server(settings: Settings) -> Iterator[Context]:
    """One server lifetime over the same data directory and database."""
    ctx = build_context(settings)
    install_services(ctx)
    try:
        yield ctx
    finally:
        ctx.close()


def _again(world: World, ctx: Context, *sites: Site) -> World:
    other = World(ctx, world.owner)
    for site in sites:
        site.identity = other.identity(site.identity.federation_id, site.token)
    return other


def test_open_round_is_refolded_after_a_restart(world: World, settings: Settings) -> None:
    fid = world.create(min_clients=2, rounds=2)["id"]
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    base = world.global_params(fid)
    world.submit(a, world.seal(a, fid, 1, {k: v + 1.0 for k, v in base.items()}, num_samples=3))
    world.ctx.close()  # the first server goes away with A's update folded only in its memory

    with server(settings) as ctx:
        again = _again(world, ctx, a, b)
        assert again.status(fid)["pending_updates"] == 1
        again.submit(b, again.seal(b, fid, 1, {k: v + 5.0 for k, v in base.items()}, num_samples=1))
        assert again.status(fid)["round"] == 2
        new = again.global_params(fid)
    for name, arr in base.items():
        np.testing.assert_allclose(new[name], arr + (3 * 1.0 + 1 * 5.0) / 4, rtol=1e-6, atol=1e-6)


def test_server_optimizer_state_survives_a_restart_between_rounds(world: World, settings: Settings) -> None:
    options = {"eta": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 0.001}
    fid = world.create(min_clients=2, rounds=3, strategy="fedadam", strategy_options=options)["id"]
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    base = world.global_params(fid)
    rng = np.random.default_rng(3)
    plan = [
        [{k: (v + rng.normal(0, 0.5, v.shape)).astype(np.float32) for k, v in base.items()} for _ in "ab"]
        for _ in range(2)
    ]
    reference = create_strategy("fedadam", options)
    expected = base
    for number, (ua, ub) in enumerate(plan, start=1):
        reference.begin_round(expected, number)
        reference.accumulate(ua, 4)
        reference.accumulate(ub, 6)
        expected = reference.finalize()

    world.submit(a, world.seal(a, fid, 1, plan[0][0], num_samples=4))
    world.submit(b, world.seal(b, fid, 1, plan[0][1], num_samples=6))
    world.ctx.close()
    with server(settings) as ctx:
        again = _again(world, ctx, a, b)
        again.submit(a, again.seal(a, fid, 2, plan[1][0], num_samples=4))
        again.submit(b, again.seal(b, fid, 2, plan[1][1], num_samples=6))
        result = again.global_params(fid)
    for name in base:
        np.testing.assert_allclose(result[name], expected[name], rtol=1e-5, atol=1e-6)


def test_a_round_left_half_closed_by_a_crash_is_finished_at_start(world: World, settings: Settings) -> None:
    fid = world.create(min_clients=2, target_clients=3, rounds=2)["id"]
    a, b, _c = world.enroll(fid, "a"), world.enroll(fid, "b"), world.enroll(fid, "c")
    world.submit(a, world.seal(a, fid, 1))
    world.submit(b, world.seal(b, fid, 1))
    with world.ctx.db.session() as s:  # the crash happened right after the round was claimed for closing
        s.execute(update(FederationRound).where(FederationRound.federation_id == fid).values(state="closing"))
    world.ctx.close()
    with server(settings) as ctx:
        ctx.services.fl_coordinator.start()
        again = World(ctx, world.owner)
        first = again.rounds(fid)[0]
        assert first["state"] == "closed" and first["close_reason"] == "recovered" and first["updates"] == 2
        assert again.status(fid)["round"] == 2


def test_other_users_never_see_a_federation(world: World) -> None:
    fid = world.create()["id"]
    mallory = principal_for(world.ctx, "mallory")
    svc = world.svc
    for call in (
        lambda: svc.get(mallory, fid),
        lambda: svc.status(mallory, fid),
        lambda: svc.rounds(mallory, fid),
        lambda: svc.participants(mallory, fid),
        lambda: svc.enroll(mallory, fid, "x", None),
        lambda: svc.download_model(mallory, fid),
        lambda: svc.upload_model(mallory, fid, b"", None),
    ):
        try:
            call()
        except Exception as exc:
            assert getattr(exc, "status_code", None) == 404, exc
        else:
            raise AssertionError("a foreign user reached another user's federation")
    assert svc.list_for(mallory) == ([], None)


def test_updates_are_records_and_one_stored_the_old_way_is_still_refolded(
    world: World, settings: Settings
) -> None:
    """Each update is a record of the federation's ``flu-`` anchor; a row naming a whole artifact
    (how updates were stored before h41) is read back as well, and archiving removes both."""
    fid = world.create(min_clients=3, rounds=2)["id"]
    a, b, c = world.enroll(fid, "a"), world.enroll(fid, "b"), world.enroll(fid, "c")
    base = world.global_params(fid)
    sent_a = world.seal(a, fid, 1, {k: v + 1.0 for k, v in base.items()}, num_samples=1)
    first = world.submit(a, sent_a)["update_id"]
    world.submit(b, world.seal(b, fid, 1, {k: v + 2.0 for k, v in base.items()}, num_samples=1))
    records = world.coordinator.records
    with world.ctx.db.session() as s:
        stored = dict(s.execute(select(FederationUpdate.id, FederationUpdate.artifact_id)).all())
    assert stored[first] == f"flu-{fid}/{first}"
    assert records.get_bytes(f"flu-{fid}", first) == sent_a, "kept exactly as received"
    assert sorted(records.names(f"flu-{fid}")) == sorted(stored)
    # Turn A's update into what an older server wrote: its own artifact flu-<update id>.
    world.ctx.vault.put_bytes(f"flu-{first}", sent_a, meta={"kind": "fl-update"})
    records.delete(f"flu-{fid}", first)
    with world.ctx.db.session() as s:
        s.execute(
            update(FederationUpdate).where(FederationUpdate.id == first).values(artifact_id=f"flu-{first}")
        )
    world.ctx.close()

    with server(settings) as ctx:
        again = _again(world, ctx, a, b, c)
        assert again.status(fid)["pending_updates"] == 2
        again.submit(c, again.seal(c, fid, 1, {k: v + 6.0 for k, v in base.items()}, num_samples=1))
        new = again.global_params(fid)
        for name, arr in base.items():
            np.testing.assert_allclose(new[name], arr + 3.0, rtol=1e-6, atol=1e-6)
        again.svc.archive(again.owner, fid, None)
        assert not [i for i in ctx.vault.list() if i.startswith("flu-")]
