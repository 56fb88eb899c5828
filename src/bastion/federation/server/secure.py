"""Secure-aggregation rounds over HTTP: one SecAgg+ session per round attempt, driven by site requests.

A round of a federation with ``privacy.secure_aggregation`` is a :class:`SecAggServer` session whose
members are the registered (and, under client sampling, selected) sites when it starts. Sites train
first, then advertise their keys; the advertise stage closes once every member has, once the quorum
has, or at the round deadline with at least ``min_clients``. Each later stage (shares, masked inputs,
unmasking) closes when every expected site has answered or after ``stage_timeout_s``. When the sum is
unmasked the coordinator closes the round with it (:meth:`Coordinator.close_secure`).

What the server keeps: signed public keys, share ciphertexts it cannot open (routed, then dropped),
one running masked sum and, after unmasking, the sum. No individual update, masked or not, is stored
in memory, the database or the vault. A session that cannot finish (too few sites left, a deadline)
is aborted with its reason, audited, and a new session may start for the same round without the sites
whose masked input the aborted one received: a site's input enters at most one session per round,
which is what stops a server from unmasking two different subsets and subtracting them. Sessions live
in the memory of the process that coordinates the federation; a restart aborts the running one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import update

from bastion.errors import BastionError, Conflict, Forbidden
from bastion.federation.secagg import (
    AdvertiseKeys,
    MaskedInput,
    RoundAborted,
    SecAggServer,
    ServerStage,
    ShareKeys,
)
from bastion.federation.server.admission import SiteIdentity, accepted_record
from bastion.federation.server.privacy import secagg_config
from bastion.federation.server.secagg_rounds import (
    STAGE_OF,
    SecAggRound,
    SecureResult,
    SiteMessage,
    eligible_members,
    identity_keys,
)
from bastion.federation.server.snapshot import FederationNow, RoundNow
from bastion.federation.server.states import FederationState, RoundState
from bastion.federation.server.transitions import system_record
from bastion.store.tables import FederationRound

if TYPE_CHECKING:
    from bastion.federation.server.coordinator import Coordinator

_log = structlog.get_logger("bastion.federation")


class SecureRounds:
    """The secure-aggregation sessions of every federation this process coordinates."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self._sessions: dict[str, SecAggRound] = {}
        self._burned: dict[str, tuple[int, set[str]]] = {}  # fid -> (round, participants in a sum)
        self._aborts: dict[str, tuple[int, str]] = {}  # fid -> (round, last abort reason)

    # -- sessions -------------------------------------------------------------------------------
    def session(self, federation_id: str) -> SecAggRound | None:
        return self._sessions.get(federation_id)

    def _burned_for(self, federation_id: str, number: int) -> set[str]:
        held = self._burned.get(federation_id)
        if held is None or held[0] != number:
            held = self._burned[federation_id] = (number, set())
        return held[1]

    def ensure(self, federation_id: str) -> SecAggRound | None:
        """The current round's session, started if the round is open and enough sites are eligible."""
        return self._ensure(federation_id)[0]

    def _ensure(self, federation_id: str) -> tuple[SecAggRound | None, FederationNow, RoundNow | None]:
        """:meth:`ensure`, with the federation and round it saw (the coordinator's snapshot)."""
        co = self.coordinator
        with co.lock(federation_id):
            snap = co.snapshots.get(federation_id)
            fed, rnd = snap.federation, snap.round
            current = self._sessions.get(federation_id)
            if fed.state != FederationState.RUNNING or rnd is None or rnd.state != RoundState.OPEN:
                if current is not None and (rnd is None or current.round_row_id != rnd.id):
                    self._sessions.pop(federation_id, None)
                return self._sessions.get(federation_id), fed, rnd
            if current is not None and current.round_row_id == rnd.id:
                self._advance(federation_id, current)
                if current.stage is not ServerStage.ABORTED:
                    return current, fed, rnd
            return self._start(federation_id, fed, rnd, current), fed, rnd

    def _start(
        self, federation_id: str, fed: FederationNow, rnd: RoundNow, previous: SecAggRound | None
    ) -> SecAggRound | None:
        co = self.coordinator
        cfg, spec = co.meta(federation_id)
        assert cfg.privacy is not None
        dp = cfg.dp()
        burned = self._burned_for(federation_id, rnd.number)
        members, directory = eligible_members(
            co.db, federation_id, burned, lambda pid: co.is_selected(cfg, federation_id, rnd, pid)
        )
        if len(members) < max(3, fed.min_clients):
            if previous is not None and previous.round_row_id != rnd.id:
                self._sessions.pop(federation_id, None)
            return None
        seq = previous.seq + 1 if previous is not None and previous.round_row_id == rnd.id else 1
        config = secagg_config(
            cfg.privacy,
            dp,
            round_id=f"{federation_id}:{rnd.number}:{rnd.attempt}.{seq}",
            participants=sorted(members),
            length=spec.num_params,
        )
        session = SecAggRound(
            rnd.number,
            rnd.id,
            seq,
            config,
            SecAggServer(config, identity_keys(directory)),
            members,
            directory,
        )
        self._sessions[federation_id] = session
        session.publish()
        co.changed(federation_id)
        _log.info(
            "fl_secagg_session",
            federation=federation_id,
            round=rnd.number,
            session=config.round_id,
            members=len(members),
            threshold=config.threshold,
            k=config.k,
        )
        return session

    # -- what a site sees -----------------------------------------------------------------------
    def view(self, site: SiteIdentity) -> dict[str, Any]:
        """The session from this site's point of view, with the message addressed to it, if any."""
        fid = site.federation_id
        with self.coordinator.lock(fid):
            session, fed, rnd = self._ensure(fid)
            if session is not None and session.stage is ServerStage.DONE:
                snap = self.coordinator.snapshots.get(fid)  # the unmasking just closed the round
                fed, rnd = snap.federation, snap.round
            out: dict[str, Any] = {
                "round": fed.current_round,
                "state": fed.state,
                "round_state": rnd.state if rnd else None,
                "session": None,
                "stage": "waiting",
                "member": False,
                "client_id": None,
                "message": None,
                "last_abort": self.last_abort(fid, fed.current_round),
            }
            if session is None or rnd is None or session.round_row_id != rnd.id:
                return out
            cid = session.client_id(site.participant_id)
            deadline = session.stage_deadline or rnd.deadline
            out.update(
                session=session.config.round_id,
                stage=session.stage.value,
                member=cid is not None,
                client_id=cid,
                stage_deadline=deadline.isoformat() if deadline is not None else None,
            )
            if cid is None:
                return out
            out.update(session.described())
            message = session.request if session.stage is ServerStage.UNMASK else session.outbox.get(cid)
            if message is not None and cid not in session.server.waiting_for():
                message = None  # answered already
            out["message"] = message.model_dump(mode="json") if message is not None else None
            return out

    def view_nowait(self, site: SiteIdentity) -> dict[str, Any] | None:
        """:meth:`view` from memory without the federation lock, for the event loop: only while a
        session runs a stage of the current round whose time is not up and whose published state is
        current; anything else (no session yet, a stage due to close, a deadline) returns None and
        goes through :meth:`view`, which starts, advances or aborts sessions."""
        fid, co = site.federation_id, self.coordinator
        now = co.fresh_nowait(fid)
        session = self._sessions.get(fid)
        if now is None or session is None:
            return None
        fed, rnd = now
        shown = session.published
        if (
            fed.state != FederationState.RUNNING
            or rnd is None
            or rnd.state != RoundState.OPEN
            or session.round_row_id != rnd.id
            or shown is None
            or shown.stage is not session.stage  # moving on right now: the lock holder decides
            or (shown.deadline is not None and co.clock() >= shown.deadline)
        ):
            return None
        cid = session.client_id(site.participant_id)
        deadline = shown.deadline or rnd.deadline
        out: dict[str, Any] = {
            "round": fed.current_round,
            "state": fed.state,
            "round_state": rnd.state,
            "session": session.config.round_id,
            "stage": shown.stage.value,
            "member": cid is not None,
            "client_id": cid,
            "message": None,
            "last_abort": self.last_abort(fid, fed.current_round),
            "stage_deadline": deadline.isoformat() if deadline is not None else None,
        }
        if cid is None:
            return out
        out.update(session.described())
        out["message"] = shown.messages.get(cid) if cid in shown.pending else None
        return out

    def last_abort(self, federation_id: str, number: int) -> str | None:
        held = self._aborts.get(federation_id)
        return held[1] if held is not None and held[0] == number else None

    # -- what a site sends ----------------------------------------------------------------------
    def receive(self, site: SiteIdentity, message: SiteMessage, source_ip: str | None) -> dict[str, Any]:
        fid = site.federation_id
        co = self.coordinator
        with co.lock(fid):
            session = self.ensure(fid)
            if session is None or message.round_id != session.config.round_id:
                raise Conflict(
                    "this secure aggregation session is over or has not started; fetch the current one",
                    code="secagg_stale_session",
                )
            cid = session.client_id(site.participant_id)
            if cid is None or message.client_id != cid:
                raise Forbidden(
                    "the message names another client than the credential it was sent with",
                    code="participant_mismatch",
                )
            expected = STAGE_OF[type(message)]
            if session.stage is not expected:
                raise Conflict(
                    f"the session is at stage {session.stage.value}, not {expected.value}",
                    code="secagg_wrong_stage",
                )
            server = session.server
            if isinstance(message, AdvertiseKeys):
                server.receive_advertise(message)
            elif isinstance(message, ShareKeys):
                server.receive_shares(message)
            elif isinstance(message, MaskedInput):
                server.receive_masked_input(message)
                self._burned_for(fid, session.round_number).add(site.participant_id)
                co.audit.append(
                    accepted_record(
                        site,
                        source_ip,
                        round=session.round_number,
                        secagg_session=session.config.round_id,
                        bytes=len(message.masked_vector),
                    )
                )
            else:
                server.receive_unmask(message)
            session.answered(cid)
            self._advance(fid, session)
            return {"accepted": True, "session": session.config.round_id, "stage": session.stage.value}

    # -- progress -------------------------------------------------------------------------------
    def tick(self) -> None:
        """Close stages whose time is up (called by the coordinator's ticker)."""
        for fid in list(self._sessions):
            try:
                with self.coordinator.lock(fid):
                    session = self._sessions.get(fid)
                    if session is not None:
                        self._advance(fid, session)
            except Exception:
                _log.exception("fl_secagg_tick_failed", federation=fid)

    def on_round_deadline(self, federation_id: str, min_clients: int) -> bool:
        """The round deadline passed (lock held): True if the session goes on, False to retry or fail.

        At the advertise stage with at least ``min_clients`` keys the session moves on and the round
        gets time for the remaining stages; anywhere else the session is aborted.
        """
        session = self._sessions.get(federation_id)
        if session is None or session.stage in (ServerStage.DONE, ServerStage.ABORTED):
            return False
        if session.stage is ServerStage.ADVERTISE:
            advertised = len(session.config.participants) - len(session.server.waiting_for())
            if advertised >= max(min_clients, session.config.threshold):
                self._close_stage(federation_id, session)
                if session.stage is ServerStage.SHARE:  # type: ignore[comparison-overlap]  # _close_stage moved it
                    self._extend_round(federation_id, session)
                    return True
                return False
        self._abort(federation_id, session, f"the round deadline passed at stage {session.stage.value}")
        return False

    def _extend_round(self, federation_id: str, session: SecAggRound) -> None:
        """Give the round time for the three key stages after the advertise stage closed."""
        co = self.coordinator
        cfg, _spec = co.meta(federation_id)
        assert cfg.privacy is not None and cfg.privacy.secure_aggregation is not None
        extra = 3 * cfg.privacy.secure_aggregation.stage_timeout_s + co.tick_seconds
        with co.db.session() as s:
            s.execute(
                update(FederationRound)
                .where(FederationRound.id == session.round_row_id, FederationRound.state == RoundState.OPEN)
                .values(deadline=co.clock() + timedelta(seconds=extra))
            )

    def _advance(self, federation_id: str, session: SecAggRound) -> None:
        """Close the current stage if everyone answered, the quorum advertised, or its time is up."""
        co = self.coordinator
        while session.stage not in (ServerStage.DONE, ServerStage.ABORTED):
            waiting = session.server.waiting_for()
            stage = session.stage
            if stage is ServerStage.ADVERTISE:
                cfg, _spec = co.meta(federation_id)
                advertised = len(session.config.participants) - len(waiting)
                due = not waiting or advertised >= max(cfg.quorum, session.config.threshold)
            else:
                due = not waiting or (
                    session.stage_deadline is not None and co.clock() >= session.stage_deadline
                )
            if not due:
                return
            self._close_stage(federation_id, session)
            if session.stage is stage:
                return

    def _close_stage(self, federation_id: str, session: SecAggRound) -> None:
        co = self.coordinator
        server = session.server
        cfg, _spec = co.meta(federation_id)
        assert cfg.privacy is not None and cfg.privacy.secure_aggregation is not None
        timeout = timedelta(seconds=cfg.privacy.secure_aggregation.stage_timeout_s)
        try:
            if session.stage is ServerStage.ADVERTISE:
                session.outbox = dict(server.close_advertise())
            elif session.stage is ServerStage.SHARE:
                session.outbox = dict(server.close_shares())
            elif session.stage is ServerStage.MASK:
                session.outbox = {}
                session.request = server.close_masked_input()
                if len(session.request.survivors) < cfg.min_clients:
                    raise RoundAborted(
                        f"only {len(session.request.survivors)} masked inputs, the federation needs "
                        f"{cfg.min_clients}"
                    )
            elif session.stage is ServerStage.UNMASK:
                result = server.finalize()
                session.request = None
                outcome = SecureResult(
                    total=result.total,
                    count=len(result.included),
                    contributors=[session.members[c] for c in result.included],
                    session=session.config.round_id,
                    max_error=result.max_error,
                )
                co.changed(federation_id)
                co.close_secure(federation_id, session.round_number, outcome)
                return
        except RoundAborted as exc:
            self._abort(federation_id, session, exc.reason)
            return
        except BastionError as exc:
            self._abort(federation_id, session, exc.message)
            return
        session.stage_deadline = co.clock() + timeout
        session.publish()
        co.changed(federation_id)

    def _abort(self, federation_id: str, session: SecAggRound, reason: str) -> None:
        if session.stage is not ServerStage.ABORTED:
            session.server.abort(reason)
        session.outbox.clear()
        session.request = None
        self._aborts[federation_id] = (session.round_number, reason)
        self.coordinator.audit.append(
            system_record(
                "fl.secagg.abort",
                federation_id,
                round=session.round_number,
                session=session.config.round_id,
                reason=reason,
            )
        )
        _log.warning(
            "fl_secagg_aborted", federation=federation_id, session=session.config.round_id, reason=reason
        )
        self.coordinator.changed(federation_id)

    def forget(self, federation_id: str) -> None:
        session = self._sessions.pop(federation_id, None)
        if session is not None and session.stage not in (ServerStage.DONE, ServerStage.ABORTED):
            session.server.abort("the round ended")

    def status(self, federation_id: str, number: int) -> dict[str, Any]:
        """The current session and the reason the round's last session was aborted, if one was."""
        session = self._sessions.get(federation_id)
        last_abort = self.last_abort(federation_id, number)
        if session is None or session.round_number != number:
            return {"session": None, "round": number, "stage": "waiting", "last_abort": last_abort}
        return {
            "last_abort": last_abort,
            "session": session.config.round_id,
            "round": session.round_number,
            "stage": session.stage.value,
            "members": len(session.members),
            "threshold": session.config.threshold,
            "neighbours": session.config.k,
            "waiting_for": len(session.server.waiting_for()),
            "failure_reason": session.server.failure_reason,
        }
