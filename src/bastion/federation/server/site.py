"""The participant side of the API: credential check, key registration, round state, signed model.

A site authenticates with its ``bsp_`` credential, which is valid for one federation only; a
credential for another federation, a revoked one or a made-up one are all the same 401 (nothing tells
a prober which federations exist). At first contact the site registers its Ed25519 public key; after
that every update must carry that key's signature, and a different key is refused.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from bastion.audit import AuditRecord
from bastion.crypto import signing
from bastion.errors import BastionError, Conflict, Unauthorized
from bastion.federation.envelope import max_update_bytes
from bastion.federation.global_model import sign_global_model
from bastion.federation.secagg import MaskedInput
from bastion.federation.server import artifacts, credentials
from bastion.federation.server.admission import SiteIdentity
from bastion.federation.server.config import FederationConfig, site_config
from bastion.federation.server.coordinator import Coordinator
from bastion.federation.server.rounds import new_strategy
from bastion.federation.server.secagg_rounds import SiteMessage
from bastion.federation.server.snapshot import FederationNow, RoundNow
from bastion.federation.server.states import FEDERATION, LIVE, FederationState
from bastion.store.tables import Federation, FederationParticipant, FederationRound, FederationUpdate

LAST_SEEN_RESOLUTION = timedelta(seconds=5)


class SiteService:
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.db, self.audit = coordinator.db, coordinator.audit
        self._models: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._models_lock = threading.Lock()

    def authenticate(
        self, federation_id: str, token: str | None, source_ip: str | None, action: str
    ) -> SiteIdentity:
        try:
            return self._authenticate(federation_id, token)
        except BastionError as exc:
            self.audit.append(
                AuditRecord(
                    action,
                    "denied",
                    target_type="federation",
                    target_id=federation_id[:64],
                    source_ip=source_ip,
                    details={"reason": exc.code, "status": exc.status_code},
                )
            )
            raise

    def cached(self, federation_id: str, token: str | None) -> SiteIdentity | None:
        """The site if its credential was verified moments ago for this federation; no I/O, so the
        event loop can answer it. Anything else (unknown, malformed, another federation) is None and
        goes through :meth:`authenticate`, which refuses and audits it."""
        if not token or not credentials.well_formed(token):
            return None
        hit = self.coordinator.sites.get(credentials.digest(token))
        return hit if hit is not None and hit.federation_id == federation_id else None

    def _authenticate(self, federation_id: str, token: str | None) -> SiteIdentity:
        if not token:
            raise Unauthorized(
                "a participant credential is required: Authorization: Bearer bsp_...",
                code="missing_credentials",
            )
        refused = Unauthorized(
            "unknown participant credential for this federation", code="unknown_participant"
        )
        if not credentials.well_formed(token):
            raise refused
        digest = credentials.digest(token)
        cached = self.coordinator.sites.get(digest)
        if cached is not None:
            if cached.federation_id != federation_id:
                raise refused
            return cached
        now = self.coordinator.clock()
        with self.db.session() as s:
            row = s.scalar(
                select(FederationParticipant).where(FederationParticipant.credential_hash == digest)
            )
            if row is None or row.federation_id != federation_id:
                raise refused
            if row.revoked_at is not None:
                raise Unauthorized("this participant credential has been revoked", code="participant_revoked")
            if row.last_seen_at is None or now - row.last_seen_at > LAST_SEEN_RESOLUTION:
                row.last_seen_at = now
            key = signing.decode_public_key(row.signing_public_key) if row.signing_public_key else None
            identity = SiteIdentity(row.id, row.name, row.federation_id, key)
        self.coordinator.sites.put(digest, identity)
        return identity

    def update_limit(self, federation_id: str) -> int:
        return max_update_bytes(self.coordinator.meta(federation_id)[1])

    def cached_update_limit(self, federation_id: str) -> int | None:
        """The update size cap from the cached (immutable) config, without I/O; None if not cached."""
        meta = self.coordinator.cached_meta(federation_id)
        return None if meta is None else max_update_bytes(meta[1])

    def register(
        self, site: SiteIdentity, public_key: str, source_ip: str | None, num_samples: int | None = None
    ) -> dict[str, Any]:
        """Record the site's signing key (and declared sample count) at first contact; the same key
        again is a no-op: a count, once registered, cannot be raised."""
        signing.decode_public_key(public_key)  # Invalid unless a canonical 32-byte key
        fid = site.federation_id
        coordinator = self.coordinator
        with coordinator.lock(fid):
            now = coordinator.clock()
            with self.db.session() as s:
                row = s.get(FederationParticipant, site.participant_id)
                assert row is not None
                if row.signing_public_key not in (None, public_key):
                    self.audit.append(
                        AuditRecord(
                            "fl.participant.register",
                            "denied",
                            site.participant_id,
                            site.actor,
                            "federation",
                            fid,
                            source_ip,
                            {"reason": "signing_key_mismatch"},
                        )
                    )
                    raise Conflict(
                        "this site already registered a different signing key; ask the coordinator to enrol it again",
                        code="signing_key_mismatch",
                    )
                if row.signing_public_key is None:
                    row.signing_public_key, row.registered_at = public_key, now
                    row.registered_samples = num_samples
                    s.flush()
                    self.audit.append(
                        AuditRecord(
                            "fl.participant.register",
                            "success",
                            site.participant_id,
                            site.actor,
                            "federation",
                            fid,
                            source_ip,
                            {"signing_public_key": public_key, "num_samples": num_samples},
                        ),
                        s,
                    )
                    self._maybe_start(s, fid, now)
        coordinator.sites.clear()
        coordinator.changed(fid)
        return self.info(replace(site, signing_public_key=signing.decode_public_key(public_key)))

    def _maybe_start(self, s: Any, federation_id: str, now: Any) -> None:
        """Start round 1's clock once ``min_clients`` sites are ready to train."""
        fed = s.get(Federation, federation_id)
        ready = s.scalar(
            select(func.count(FederationParticipant.id)).where(
                FederationParticipant.federation_id == federation_id,
                FederationParticipant.signing_public_key.is_not(None),
                FederationParticipant.revoked_at.is_(None),
            )
        )
        if fed is None or fed.state != FederationState.WAITING or int(ready or 0) < fed.min_clients:
            return
        s.execute(
            update(FederationRound)
            .where(
                FederationRound.federation_id == federation_id,
                FederationRound.number == fed.current_round,
                FederationRound.deadline.is_(None),
            )
            .values(deadline=now + timedelta(seconds=fed.round_timeout_s))
        )
        fed.state = FEDERATION.check_move(fed.state, FederationState.RUNNING)
        fed.updated_at = now

    def info_nowait(self, site: SiteIdentity) -> dict[str, Any] | None:
        """:meth:`info` from memory alone (the snapshot, the open round's record, the cached config and
        keys), for the event loop; None when any of it needs I/O."""
        fid, co = site.federation_id, self.coordinator
        now, meta = co.fresh_nowait(fid), co.cached_meta(fid)
        if now is None or meta is None or co.cached_keys(fid) is None:
            return None
        fed, rnd = now
        submitted = co.submitted(fid, rnd.id, site.participant_id) if rnd is not None else False
        if submitted is None:
            return None
        return self._answer(site, fed, rnd, submitted, meta[0])

    def info(self, site: SiteIdentity) -> dict[str, Any]:
        """Where the federation stands, from this site's point of view."""
        fid = site.federation_id
        fed, rnd = self.coordinator.fresh(fid)
        submitted = self.coordinator.submitted(fid, rnd.id, site.participant_id) if rnd is not None else False
        if submitted is None and rnd is not None:
            with self.db.session() as s:
                submitted = (
                    s.scalar(
                        select(FederationUpdate.id).where(
                            FederationUpdate.federation_id == fid,
                            FederationUpdate.round == rnd.number,
                            FederationUpdate.participant_id == site.participant_id,
                        )
                    )
                    is not None
                )
        return self._answer(site, fed, rnd, bool(submitted), self.coordinator.meta(fid)[0])

    def _answer(
        self,
        site: SiteIdentity,
        fed: FederationNow,
        rnd: RoundNow | None,
        submitted: bool,
        cfg: FederationConfig,
    ) -> dict[str, Any]:
        fid = site.federation_id
        return {
            "federation_id": fid,
            "participant_id": site.participant_id,
            "secure_aggregation": cfg.secure,
            "selected": rnd is not None and self.coordinator.is_selected(cfg, fid, rnd, site.participant_id),
            "name": site.name,
            "state": fed.state,
            "failure_reason": fed.failure_reason,
            "round": fed.current_round,
            "round_state": rnd.state if rnd else None,
            "attempt": rnd.attempt if rnd else None,
            "deadline": rnd.deadline.isoformat() if rnd and rnd.deadline else None,
            "rounds": fed.rounds,
            "completed_rounds": fed.completed_rounds,
            "submitted": submitted,
            "registered": site.signing_public_key is not None,
            "server_signing_key": fed.signing_public_key,
            "server_sealing_key": fed.sealing_public_key,
        }

    def secagg_view(self, site: SiteIdentity) -> dict[str, Any]:
        """The round's secure-aggregation session as this site sees it (stage, its message).

        Stage deadlines are checked here; the round deadline by the ticker and by ``/info``.
        """
        self._require_secure(site.federation_id)
        return self.coordinator.secure.view(site)

    def secagg_view_nowait(self, site: SiteIdentity) -> dict[str, Any] | None:
        """:meth:`secagg_view` from memory, for the event loop; None when it needs the lock or I/O."""
        meta = self.coordinator.cached_meta(site.federation_id)
        if meta is None or not meta[0].secure:
            return None
        return self.coordinator.secure.view_nowait(site)

    def secagg_receive(
        self, site: SiteIdentity, message: SiteMessage, source_ip: str | None
    ) -> dict[str, Any]:
        self._require_secure(site.federation_id)
        try:
            return self.coordinator.secure.receive(site, message, source_ip)
        except BastionError as exc:
            if isinstance(message, MaskedInput):
                self.coordinator.audit_denial(site.federation_id, site, exc, None, source_ip)
            raise

    def _require_secure(self, federation_id: str) -> None:
        if not self.coordinator.meta(federation_id)[0].secure:
            raise Conflict(
                "this federation does not use secure aggregation; send sealed updates to .../site/update",
                code="secure_aggregation_off",
            )

    def signed_model_nowait(self, site: SiteIdentity) -> tuple[int, bytes] | None:
        """:meth:`signed_model` when the snapshot is current and this round's model is signed already."""
        fid = site.federation_id
        snap = self.coordinator.snapshots.cached(fid)
        rnd = snap.round if snap is not None else None
        if snap is None or rnd is None or snap.federation.state not in LIVE:
            return None
        cached = self._models.get(fid)
        if cached is None or cached[0] != (rnd.number, rnd.base_version):
            return None
        return rnd.number, cached[1]

    def signed_model(self, site: SiteIdentity) -> tuple[int, bytes]:
        """The open round's global model, signed by the server with the round and site config bound in."""
        fid = site.federation_id
        snap = self.coordinator.snapshots.get(fid)
        fed, rnd = snap.federation, snap.round
        if fed.state not in LIVE or rnd is None:
            raise Conflict(
                f"the federation is {fed.state}; there is no round to train", code="federation_finished"
            )
        key = (rnd.number, rnd.base_version)
        with self._models_lock:
            cached = self._models.get(fid)
        if cached is not None and cached[0] == key:
            return rnd.number, cached[1]
        cfg, _spec = self.coordinator.meta(fid)
        keys = self.coordinator.keys(fid)
        model = sign_global_model(
            keys.signing,
            federation_id=fid,
            round=rnd.number,
            weights=artifacts.global_bytes(self.coordinator.vault, fid, rnd.base_version),
            config=site_config(cfg, new_strategy(cfg).client_config(), keys.sealing_public),
        )
        blob = model.to_bytes()
        with self._models_lock:
            self._models[fid] = (key, blob)
        return rnd.number, blob
