"""The round lifecycle: admit updates as they arrive, close at quorum or deadline, retry or fail.

Each accepted update is folded into the open round's strategy at once (streaming: server memory stays
O(model)). A round closes when ``target_clients`` updates are in, or at its deadline if at least
``min_clients`` are; short of that at the deadline it is given another deadline (keeping what it has)
up to ``max_round_attempts`` times, after which the federation fails with the reason. Closing claims
the round in the database first (``open`` -> ``closing``), so an update racing the close is refused
as ``round_closed`` instead of being silently dropped.

Deadlines are checked by a background ticker (``start``/``close``, run by the app's lifespan) and on
every site request. All state needed to continue lives in the database and the vault; the in-memory
running aggregate is rebuilt on demand after a restart (:mod:`.rounds`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from bastion.audit import AuditLog
from bastion.catalog.model_versions import ModelVersions
from bastion.errors import BastionError, Conflict, Forbidden, NotFound
from bastion.federation.server import artifacts, deadlines, transitions
from bastion.federation.server.admission import (
    Admitted,
    MemoryGuard,
    SiteCache,
    SiteIdentity,
    admit,
    audit_denial,
)
from bastion.federation.server.config import FederationConfig
from bastion.federation.server.epochs import Epochs
from bastion.federation.server.hooks import RoundHooks
from bastion.federation.server.keys import ServerKeys
from bastion.federation.server.privacy import round_privacy, selected
from bastion.federation.server.rounds import Running, ServerEvaluator, fold_missing, restore, site_metrics
from bastion.federation.server.secagg_rounds import SecureResult
from bastion.federation.server.secure import SecureRounds
from bastion.federation.server.snapshot import FederationNow, RoundNow, Snapshots
from bastion.federation.server.states import LIVE, RoundState
from bastion.federation.server.ticker import Ticker
from bastion.federation.server.weights import WeightCap, load_cap
from bastion.federation.sitedata import TABULAR_BUILTINS
from bastion.federation.tensors import TensorSpec, encode
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.tables import Federation, FederationRound
from bastion.vault.records import Records
from bastion.vault.store import VaultStore

_log = structlog.get_logger("bastion.federation")


class Coordinator:
    def __init__(
        self,
        db: Database,
        vault: VaultStore,
        audit: AuditLog,
        registry: ModelVersions | None,
        *,
        clock: Callable[[], datetime] = utcnow,
        tick_seconds: float = 1.0,
        hooks: RoundHooks | None = None,
    ) -> None:
        self.db, self.vault, self.audit, self.registry = db, vault, audit, registry
        self.records = Records(vault)  # received updates (artifacts.save_update)
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.hooks = hooks or RoundHooks()
        self.evaluator = ServerEvaluator()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._running: dict[str, Running] = {}
        # Admitted, not yet folded: federation -> update id -> (round id, participant id, update).
        self._inbox: dict[str, dict[str, tuple[str, str, Admitted]]] = {}
        self._keys: dict[str, ServerKeys] = {}
        self._meta: dict[str, tuple[FederationConfig, TensorSpec]] = {}
        self.epochs = Epochs()
        self.snapshots = Snapshots(db, self.epochs)
        self._ticker: Ticker | None = None
        self.sites = SiteCache()
        self.secure = SecureRounds(self)
        # SQLite has one writer at a time and its busy handler sleeps in 10-50 ms steps: queueing this
        # process's admissions on a mutex instead hands the lock over at once (PostgreSQL needs none).
        self.write_lock: threading.Lock | None = threading.Lock() if db.dialect == "sqlite" else None

    # -- caches --------------------------------------------------------------------------------
    def lock(self, federation_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(federation_id, threading.RLock())

    def keys(self, federation_id: str) -> ServerKeys:
        keys = self._keys.get(federation_id)
        if keys is None:
            keys = self._keys[federation_id] = ServerKeys.load(self.vault, federation_id)
        return keys

    def meta(self, federation_id: str) -> tuple[FederationConfig, TensorSpec]:
        """The federation's (immutable) config and tensor spec."""
        meta = self._meta.get(federation_id)
        if meta is None:
            with self.db.session() as s:
                fed = s.get(Federation, federation_id)
                if fed is None:
                    raise NotFound("federation not found")
                cfg = FederationConfig.model_validate_json(fed.config_json)
                spec = TensorSpec.from_json(fed.spec_json)
            meta = self._meta[federation_id] = (cfg, spec)
        return meta

    def cached_meta(self, federation_id: str) -> tuple[FederationConfig, TensorSpec] | None:
        """:meth:`meta` if this process has it already (no I/O: callable on the event loop)."""
        return self._meta.get(federation_id)

    def cached_keys(self, federation_id: str) -> ServerKeys | None:
        """:meth:`keys` if this process has them already (no I/O)."""
        return self._keys.get(federation_id)

    def epoch(self, federation_id: str) -> int:
        """Bumped on every round transition; long-polling sites wait for it to change."""
        return self.epochs.get(federation_id)

    def changed(self, federation_id: str) -> None:
        """A round or session moved on (call it after the commit): re-read the federation's snapshot,
        then wake the long polls waiting on it."""
        self.snapshots.bump(federation_id)

    def submitted(self, federation_id: str, round_id: str, participant_id: str) -> bool | None:
        """Whether the site is in the open round, from memory; None when this process does not hold it."""
        held = self._running.get(federation_id)
        if held is None or held.round_id != round_id:
            return None
        return participant_id in held.sites

    def forget(self, federation_id: str) -> None:
        """Drop the running aggregate and session (the round ended or was replaced); lock held."""
        self._running.pop(federation_id, None)
        with self._guard:
            self._inbox.pop(federation_id, None)
        self.secure.forget(federation_id)

    @staticmethod
    def current(s: Session, federation_id: str) -> tuple[Federation, FederationRound | None]:
        """The federation and its current round, in one query."""
        row = s.execute(
            select(Federation, FederationRound)
            .outerjoin(
                FederationRound,
                and_(
                    FederationRound.federation_id == Federation.id,
                    FederationRound.number == Federation.current_round,
                ),
            )
            .where(Federation.id == federation_id)
        ).first()
        if row is None:
            raise NotFound("federation not found")
        return row[0], row[1]

    def fresh(self, federation_id: str) -> tuple[FederationNow, RoundNow | None]:
        """The current state (from the snapshot), after handling a deadline that has passed (the
        per-request check)."""
        snap = self.snapshots.get(federation_id)
        if self._overdue(snap.round):
            with self.lock(federation_id):
                self._on_deadline(federation_id)
            self.snapshots.forget(federation_id)
            snap = self.snapshots.get(federation_id)
        return snap.federation, snap.round

    def fresh_nowait(self, federation_id: str) -> tuple[FederationNow, RoundNow | None] | None:
        """:meth:`fresh` when it needs no I/O (a current snapshot, no deadline passed), else None."""
        snap = self.snapshots.cached(federation_id)
        if snap is None or self._overdue(snap.round):
            return None
        return snap.federation, snap.round

    def _overdue(self, rnd: RoundNow | None) -> bool:
        return (
            rnd is not None
            and rnd.state == RoundState.OPEN
            and rnd.deadline is not None
            and rnd.deadline <= self.clock()
        )

    # -- updates ----------------------------------------------------------------------------------
    def submit(self, site: SiteIdentity, message: bytes, source_ip: str | None) -> dict[str, Any]:
        """Admit one update (every refusal audited and raised with its code), fold it, maybe close."""
        try:
            return self._submit(site, message, source_ip)
        except BastionError as exc:
            self.audit_denial(site.federation_id, site, exc, message, source_ip)
            raise

    def _submit(self, site: SiteIdentity, message: bytes, source_ip: str | None) -> dict[str, Any]:
        fid = site.federation_id
        fed, rnd = self.fresh(fid)
        target = fed.target_clients
        if fed.state not in LIVE or rnd is None:
            raise Conflict(
                f"the federation is {fed.state}; it takes no more updates", code="federation_finished"
            )
        if rnd.state != RoundState.OPEN:
            raise Conflict(
                f"round {rnd.number} is closing; the next round opens shortly", code="round_closed"
            )
        cfg, spec = self.meta(fid)
        self.check_sealed_update_allowed(cfg, fid, rnd, site.participant_id)
        held = self._running.get(fid)
        guard = (
            MemoryGuard(held.number, held.sites, held.nonces) if held and held.round_id == rnd.id else None
        )
        admitted = admit(
            self.db,
            self.vault,
            self.records,
            self.audit,
            message=message,
            keys=self.keys(fid),
            spec=spec,
            round_id=rnd.id,
            round_number=rnd.number,
            site=site,
            source_ip=source_ip,
            guard=guard,
            write_lock=self.write_lock,
        )
        with self._guard:  # in memory at once, for whoever holds the lock first (see _fold_inbox)
            self._inbox.setdefault(fid, {})[admitted.update_id] = (rnd.id, site.participant_id, admitted)
        with self.lock(fid):
            self._fold_inbox(fid, self._running_for(fid, fed, rnd))
            if admitted.accepted >= target:
                try:
                    self.close_round(fid, "quorum", rnd.number)
                except Exception:  # the update is in; the ticker finishes the close (recover)
                    self.forget(fid)
                    self.snapshots.forget(fid)  # the round may be left claimed (closing)
                    _log.exception("fl_close_failed", federation=fid, round=rnd.number)
        return {
            "accepted": True,
            "update_id": admitted.update_id,
            "round": rnd.number,
            "pending_updates": admitted.accepted,
            "required_updates": target,
        }

    def check_sealed_update_allowed(
        self, cfg: FederationConfig, federation_id: str, rnd: RoundNow, participant_id: str
    ) -> None:
        """Sealed updates are for plain rounds, and under client sampling only from the sites drawn."""
        if cfg.secure:
            raise Conflict(
                "this federation uses secure aggregation: send masked inputs through .../site/secagg",
                code="secure_aggregation_required",
            )
        if not self.is_selected(cfg, federation_id, rnd, participant_id):
            raise Forbidden(
                f"this site was not drawn for round {rnd.number}; wait for the next one", code="not_selected"
            )

    def is_selected(
        self, cfg: FederationConfig, federation_id: str, rnd: RoundNow, participant_id: str
    ) -> bool:
        dp = cfg.dp()
        q = dp.sampling_rate if dp is not None else 1.0
        secret = self.keys(federation_id).sampling_secret if q < 1 else b""
        return selected(secret, federation_id, rnd.number, rnd.attempt, participant_id, q)

    def audit_denial(
        self,
        federation_id: str,
        site: SiteIdentity | None,
        exc: BastionError,
        message: bytes | None,
        source_ip: str | None,
    ) -> None:
        audit_denial(self.audit, federation_id, site, exc, message, source_ip)

    def _running_for(
        self, federation_id: str, fed: FederationNow | None = None, rnd: RoundNow | None = None
    ) -> Running | None:
        """The open round's running aggregate, rebuilt from the vault if this process has none (lock held).

        ``fed``/``rnd`` (read by the caller just before) save a query when the cached aggregate belongs
        to that very round; anything else is decided on a fresh read, since the round may have moved on.
        """
        cached = self._running.get(federation_id)
        if cached is not None and rnd is not None and fed is not None and cached.round_id == rnd.id:
            return cached
        with self.db.session() as s:
            row_fed, row = self.current(s, federation_id)
        if row_fed.state not in LIVE or row is None or row.state not in (RoundState.OPEN, RoundState.CLOSING):
            self._running.pop(federation_id, None)
            return None
        running = self._running.get(federation_id)
        if running is None or running.round_id != row.id:
            cfg, spec = self.meta(federation_id)
            running = restore(
                self.db, self.vault, federation_id=federation_id, cfg=cfg, spec=spec, round_row=row
            )
            self._fold_inbox(federation_id, running)
            self._fold_missing(federation_id, running)
            self._running[federation_id] = running
        return running

    def _fold_inbox(self, federation_id: str, running: Running | None) -> None:
        """Fold every update this process admitted but has not folded yet (lock held).

        Admission runs outside the lock, so when the last update of a round closes it, others may be
        admitted and still waiting for the lock: folding them here from memory spares the close from
        reading them back from the vault and verifying them again (``fold_missing`` still catches
        whatever another process admitted). An entry of any other round was counted by that round's
        close (the database is the record) and is dropped.
        """
        with self._guard:
            pending = self._inbox.pop(federation_id, {})
        if running is None:
            return
        for update_id, (round_id, participant_id, admitted) in pending.items():
            if round_id != running.round_id or update_id in running.folded:
                continue
            weight = self._cap(federation_id, running).effective(participant_id, admitted.header.num_samples)
            tensors = self.hooks.on_update(federation_id, running.number, admitted.tensors, weight)
            running.strategy.accumulate(tensors, weight)
            running.record(update_id, participant_id, admitted.header.nonce)

    def _cap(self, federation_id: str, running: Running) -> WeightCap:
        """The round's bound on site weights (weights.py), read once per round."""
        if running.cap is None:
            cfg, _spec = self.meta(federation_id)
            running.cap = load_cap(self.db, federation_id, cfg.max_site_share)
        return running.cap

    def _fold_missing(self, federation_id: str, running: Running) -> int:
        _cfg, spec = self.meta(federation_id)
        cap = self._cap(federation_id, running)
        return fold_missing(
            self.db,
            self.vault,
            self.records,
            running,
            federation_id=federation_id,
            keys=self.keys(federation_id),
            spec=spec,
            on_update=lambda t, n: self.hooks.on_update(federation_id, running.number, t, n),
            weight=cap.effective,
        )

    # -- deadlines ----------------------------------------------------------------------------------
    def check_deadline(self, federation_id: str) -> None:
        """Cheap per-request check; takes the lock only when the open round's deadline has passed."""
        self.fresh(federation_id)

    def tick(self) -> int:
        """Handle every open round whose deadline has passed; returns how many were looked at."""
        return deadlines.tick(self)

    def _on_deadline(self, federation_id: str) -> None:
        deadlines.on_deadline(self, federation_id)

    # -- closing --------------------------------------------------------------------------------------
    def close_secure(self, federation_id: str, number: int, outcome: SecureResult) -> bool:
        """Close round ``number`` with a secure-aggregation session's unmasked sum (lock held)."""
        return self.close_round(federation_id, "secure_aggregation", number, secure=outcome)

    def close_round(
        self,
        federation_id: str,
        reason: str,
        number: int,
        *,
        recovering: bool = False,
        secure: SecureResult | None = None,
    ) -> bool:
        """Aggregate and publish round ``number`` if it is still the open one, then open the next (lock held).

        Naming the round keeps a late trigger (a quorum reached just as the ticker closed the round at
        its deadline) from closing the *next* round.
        """
        with self.db.session() as s:
            fed, rnd = self.current(s, federation_id)
        if rnd is None or rnd.number != number:
            return False
        accepted = transitions.claim(
            self.db, rnd.id, (RoundState.OPEN, RoundState.CLOSING) if recovering else (RoundState.OPEN,)
        )
        if accepted is None:
            return False
        cfg, _spec = self.meta(federation_id)
        if cfg.secure and secure is None:  # a crash lost the unmasked sum: run the round again
            transitions.reopen(self.db, self.audit, fed, rnd, now=self.clock())
            self.changed(federation_id)
            return False
        running = self._running.get(federation_id)
        if running is None or running.round_id != rnd.id:
            running = self._running_for(federation_id)
        assert running is not None and running.number == number
        self._fold_inbox(federation_id, running)
        if len(running.folded) < accepted:  # admitted by a previous process (or another): read them in
            self._fold_missing(federation_id, running)
        try:
            if secure is not None:
                running.strategy.add_sum(secure.total, secure.count)  # type: ignore[attr-defined]
            params = self.hooks.on_aggregate(federation_id, number, running.strategy.finalize())
        except BastionError as exc:
            reason_text = f"aggregation of round {number} failed: {exc.message}"
            transitions.fail(
                self.db,
                self.audit,
                federation_id,
                rnd.id,
                now=self.clock(),
                reason=reason_text,
                close_reason="aggregation_failed",
            )
            self.forget(federation_id)
            self.changed(federation_id)
            return False
        state_version = artifacts.save_state(self.vault, federation_id, running.strategy.state_dict(), number)
        blob = encode(params)
        result_version = artifacts.save_global(self.vault, federation_id, blob, number)
        metrics, contributors = site_metrics(
            self.db, federation_id, number, self._cap(federation_id, running)
        )
        if secure is not None:
            metrics, contributors = {"num_updates": float(secure.count)}, secure.contributors
        metrics.update(self.evaluator.evaluate(federation_id, cfg, params))
        privacy_metrics, stop_reason = round_privacy(cfg, fed.completed_rounds + 1)
        metrics.update(privacy_metrics)
        lineage = {
            "federation_id": federation_id,
            "round": number,
            "participants": contributors,
            "strategy": cfg.strategy,
            "global_version": result_version,
            "close_reason": reason,
        }
        server_data = cfg.evaluation.server_dataset
        if server_data and server_data.removeprefix("builtin:") in TABULAR_BUILTINS:
            # quantize measures accuracy on this source's held-out rows, as for a job's model
            lineage["dataset_source"] = server_data.removeprefix("builtin:")
        owner_id, name, project_id = fed.owner_id, fed.name, fed.project_id

        def publish(s: Session) -> int | None:  # in the close's transaction: closed and registered at once
            return self.publish(owner_id, name, cfg, blob, metrics, lineage, project_id=project_id, session=s)

        next_round = transitions.commit_close(
            self.db,
            self.audit,
            fed,
            rnd,
            now=self.clock(),
            reason=reason,
            result_version=result_version,
            state_version=state_version,
            metrics=metrics,
            contributors=contributors,
            stop_reason=stop_reason,
            accepted=secure.count if secure is not None else None,
            publish=publish,
        )
        if next_round is None:
            self.forget(federation_id)
            self.evaluator.forget(federation_id)
        else:
            running.strategy.begin_round(params, number + 1)
            self._running[federation_id] = Running(next_round.id, number + 1, running.strategy)
        self.changed(federation_id)
        return True

    def publish(
        self,
        owner_id: str,
        name: str,
        cfg: FederationConfig,
        blob: bytes,
        metrics: dict[str, float],
        lineage: dict[str, Any],
        *,
        project_id: str | None = None,
        session: Session | None = None,
    ) -> int | None:
        return transitions.publish(
            self.registry, owner_id, name, cfg, blob, metrics, lineage, project_id=project_id, session=session
        )

    # -- background ticker ------------------------------------------------------------------------
    def recover(self) -> None:
        """Finish rounds a crash or an error left half-closed (their updates are all persisted)."""
        deadlines.recover(self)

    def start(self) -> None:
        """Finish half-closed rounds, then check deadlines every ``tick_seconds`` in the background."""
        if self._ticker is None:
            self.recover()
            self._ticker = Ticker(self.tick, self.tick_seconds, "bastion-fl-ticker")

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
