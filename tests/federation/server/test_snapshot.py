"""Site requests answered from memory say what the database says, and a transition makes them re-read it."""

from __future__ import annotations

from sqlalchemy import update

from bastion.store.tables import FederationRound
from tests.federation.server.support import World


def test_info_from_memory_matches_the_database_path_through_a_round(world: World) -> None:
    fid = world.create(min_clients=2, rounds=3)["id"]
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    sites = world.sites_svc
    world.submit(a, world.seal(a, fid, 1))
    assert sites.info_nowait(a.identity) == sites.info(a.identity)
    assert sites.info(a.identity)["submitted"] and not sites.info(b.identity)["submitted"]
    world.submit(b, world.seal(b, fid, 1))  # quorum: round 2 opens
    for site in (a, b):
        now = sites.info_nowait(site.identity)
        assert now is not None and now == sites.info(site.identity)
        assert (now["round"], now["round_state"], now["submitted"]) == (2, "open", False)
    number, blob = sites.signed_model(a.identity)
    assert number == 2 and sites.signed_model_nowait(a.identity) == (2, blob)


def test_a_transition_is_seen_at_once_and_a_change_made_elsewhere_within_the_bound(world: World) -> None:
    fid = world.create(min_clients=2, rounds=3)["id"]
    a, _b = world.enroll(fid, "a"), world.enroll(fid, "b")
    coordinator, sites = world.coordinator, world.sites_svc
    assert sites.info(a.identity)["round_state"] == "open"
    with world.ctx.db.session() as s:  # as another process would: no epoch bump here
        s.execute(update(FederationRound).where(FederationRound.federation_id == fid).values(attempt=5))
    coordinator.snapshots.ttl = 0.0  # the bound on how long a copy may be used
    assert coordinator.fresh_nowait(fid) is None, "an expired copy is never answered from memory"
    assert sites.info(a.identity)["attempt"] == 5
    coordinator.snapshots.ttl = 3600.0
    with world.ctx.db.session() as s:
        s.execute(update(FederationRound).where(FederationRound.federation_id == fid).values(attempt=6))
    coordinator.changed(fid)  # what every transition does after its commit
    now = coordinator.fresh_nowait(fid)
    assert now is not None and now[1] is not None and now[1].attempt == 6
