"""Deadlines and recovery: what the coordinator's ticker (and every site request) does with time.

A round whose deadline has passed closes if it has ``min_clients`` updates, gets another deadline
(keeping what it has) up to ``max_round_attempts`` times, or fails the federation with the reason; a
secure round first lets its session move on (:meth:`SecureRounds.on_round_deadline`). :func:`recover`
finishes rounds a crash left half-closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select

from bastion.federation.server import transitions
from bastion.federation.server.states import RoundState
from bastion.store.tables import FederationRound

if TYPE_CHECKING:
    from bastion.federation.server.coordinator import Coordinator

_log = structlog.get_logger("bastion.federation")


def tick(co: Coordinator) -> int:
    """Handle every open round whose deadline has passed; returns how many were looked at."""
    with co.db.session() as s:
        due = list(
            s.scalars(
                select(FederationRound.federation_id).where(
                    FederationRound.state == RoundState.OPEN,
                    FederationRound.deadline.is_not(None),
                    FederationRound.deadline <= co.clock(),
                )
            )
        )
    for fid in due:
        try:
            with co.lock(fid):
                on_deadline(co, fid)
        except Exception:
            co.forget(fid)
            _log.exception("fl_deadline_failed", federation=fid)
    co.secure.tick()
    co.recover()
    return len(due)


def on_deadline(co: Coordinator, federation_id: str) -> None:
    """The open round's deadline has passed: close it, give it another deadline, or fail (lock held)."""
    now = co.clock()
    with co.db.session() as s:
        fed, rnd = co.current(s, federation_id)
    if rnd is None or rnd.state != RoundState.OPEN or rnd.deadline is None or rnd.deadline > now:
        return
    if co.meta(federation_id)[0].secure and co.secure.on_round_deadline(federation_id, fed.min_clients):
        co.changed(federation_id)
        return
    if rnd.accepted >= fed.min_clients:
        co.close_round(federation_id, "deadline", rnd.number)
        return
    if rnd.attempt < fed.max_round_attempts:
        transitions.retry(co.db, co.audit, fed, rnd, now=now)
    else:
        reason = (
            f"round {rnd.number} received {rnd.accepted} of the {fed.min_clients} updates it needs "
            f"after {rnd.attempt} deadline(s) of {fed.round_timeout_s:g} s"
        )
        last_abort = co.secure.last_abort(federation_id, rnd.number)
        if last_abort is not None:
            reason += f"; the last secure aggregation session ended: {last_abort}"
        transitions.fail(
            co.db,
            co.audit,
            federation_id,
            rnd.id,
            now=now,
            reason=reason,
            close_reason="min_clients_not_met",
            round_states=(RoundState.OPEN,),
        )
        co.forget(federation_id)
    co.changed(federation_id)


def recover(co: Coordinator) -> None:
    """Finish rounds a crash or an error left half-closed (their updates are all persisted).

    A round being closed right now holds its federation's lock; once that close is done the round
    is no longer the current one and ``_close`` does nothing.
    """
    with co.db.session() as s:
        stuck = s.execute(
            select(FederationRound.federation_id, FederationRound.number).where(
                FederationRound.state == RoundState.CLOSING
            )
        ).all()
    for fid, number in stuck:
        try:
            with co.lock(fid):
                with co.db.session() as s:
                    _fed, rnd = co.current(s, fid)
                if rnd is None or rnd.number != number or rnd.state != RoundState.CLOSING:
                    continue  # closed meanwhile by the thread that claimed it
                co.forget(fid)  # a failed close may have finalized it: rebuild from the vault
                co.close_round(fid, "recovered", number, recovering=True)
        except Exception:
            _log.exception("fl_recover_failed", federation=fid)
