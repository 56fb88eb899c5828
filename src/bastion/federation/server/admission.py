"""Admitting one update: verify, open, validate, then persist it so that races cannot double-count.

Order of checks (the library's :func:`verify_and_open` does the first ones): size, framing, header,
federation, participant, signature, round, replay/duplicate, decryption; then tensor names, shapes,
dtype and finiteness. Nothing is decrypted before the signature is verified. The update is then
written to the vault as received (a record of the federation's ``flu-`` anchor: durable when the write
returns, before the row that names it is committed), and one transaction (1) bumps the round's counter *only if the round
is still open* and (2) inserts the ``fl_updates`` row, whose unique constraints are the final word on
duplicates and replays even when two requests race.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from bastion.audit import AuditLog, AuditRecord
from bastion.errors import BastionError, Conflict, CryptoError, Forbidden, Unauthorized
from bastion.federation.envelope import UpdateHeader, max_update_bytes, read_header, verify_and_open
from bastion.federation.replay import duplicate, replayed
from bastion.federation.server.artifacts import drop_update, save_update
from bastion.federation.server.keys import ServerKeys
from bastion.federation.server.states import RoundState
from bastion.federation.tensors import TensorSpec, decode, validate
from bastion.store import Database
from bastion.store.base import new_id, utcnow
from bastion.store.tables import FederationRound, FederationUpdate
from bastion.vault.records import Records
from bastion.vault.store import VaultStore


@dataclass(frozen=True)
class SiteIdentity:
    """A participant authenticated by its credential for one federation."""

    participant_id: str
    name: str
    federation_id: str
    signing_public_key: Ed25519PublicKey | None

    @property
    def actor(self) -> str:
        return f"site:{self.name}"[:64]


class MemoryGuard:
    """The same pre-check from the open round's in-memory record, saving a query per update.

    Used only while this process holds the round's running state; the unique constraints stay the final
    word, so an update admitted elsewhere is still refused (after decryption instead of before).
    """

    def __init__(self, round: int, sites: set[str], nonces: set[str]) -> None:
        self.round, self.sites, self.nonces = round, sites, nonces

    def check(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        if nonce in self.nonces:
            raise replayed()
        if round == self.round and participant_id in self.sites:
            raise duplicate(round)

    def record(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        self.check(federation_id, round, participant_id, nonce)


class SiteCache:
    """Credential digest -> identity for ``ttl`` seconds, so a polling site costs no query per request.

    Revocation and key registration in this process clear it at once; made by another API worker they
    take effect within ``ttl``. Failures are never cached, only digests are kept, and it is bounded.
    """

    def __init__(self, ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[str, tuple[float, SiteIdentity]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> SiteIdentity | None:
        with self._lock:
            hit = self._entries.get(digest)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            return None
        return hit[1]

    def put(self, digest: str, identity: SiteIdentity) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), identity)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True)
class Admitted:
    update_id: str
    header: UpdateHeader
    tensors: dict[str, np.ndarray]
    accepted: int


class DbReplayGuard:
    """Pre-decryption check against the accepted updates; the durable record is the row itself."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def check(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        with self.db.session() as s:
            seen = s.scalars(
                select(FederationUpdate.nonce)
                .where(
                    or_(
                        FederationUpdate.nonce == nonce,
                        and_(
                            FederationUpdate.federation_id == federation_id,
                            FederationUpdate.round == round,
                            FederationUpdate.participant_id == participant_id,
                        ),
                    )
                )
                .limit(2)
            ).all()
        if nonce in seen:
            raise replayed()
        if seen:
            raise duplicate(round)

    def record(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        """Admission inserts the row under UNIQUE constraints; here only a last re-check is possible."""
        self.check(federation_id, round, participant_id, nonce)


def _lookup(site: SiteIdentity) -> Callable[[str], Ed25519PublicKey | None]:
    def lookup(participant_id: str) -> Ed25519PublicKey | None:
        if participant_id != site.participant_id:
            raise Forbidden(
                "the update names another participant than the credential it was sent with",
                code="participant_mismatch",
            )
        if site.signing_public_key is None:
            raise Forbidden(
                "this site has not registered its signing key yet (POST .../site/register)",
                code="key_not_registered",
            )
        return site.signing_public_key

    return lookup


def open_checked(
    message: bytes,
    *,
    keys: ServerKeys,
    federation_id: str,
    round: int,
    spec: TensorSpec,
    site: SiteIdentity,
    guard: DbReplayGuard | MemoryGuard | None,
) -> tuple[UpdateHeader, dict[str, np.ndarray]]:
    """Every check, from size to finiteness; raises the first failure's error with its code."""
    header, payload = verify_and_open(
        message,
        server_key=keys.sealing,
        federation_id=federation_id,
        round=round,
        participants=_lookup(site),
        replay_guard=guard,
        max_bytes=max_update_bytes(spec),
    )
    tensors = decode(payload, max_bytes=spec.max_encoded_bytes())
    validate(tensors, spec)
    return header, tensors


# Core statements, built once: the ORM's bulk-update path and unit of work cost more per update than
# the two statements themselves. (1) counts the update only while the round is open; (2) is the row
# whose unique constraints settle races.
_ROUNDS, _UPDATES = cast(Table, FederationRound.__table__), cast(Table, FederationUpdate.__table__)
_COUNT = (
    update(_ROUNDS)
    .where(_ROUNDS.c.id == bindparam("round_id"), _ROUNDS.c.state == RoundState.OPEN.value)
    .values(accepted=_ROUNDS.c.accepted + 1, num_samples=_ROUNDS.c.num_samples + bindparam("samples"))
    .returning(_ROUNDS.c.accepted)
)
_INSERT_UPDATE = insert(_UPDATES)


def admit(
    db: Database,
    vault: VaultStore,
    records: Records,
    audit: AuditLog,
    *,
    message: bytes,
    keys: ServerKeys,
    spec: TensorSpec,
    round_id: str,
    round_number: int,
    site: SiteIdentity,
    source_ip: str | None,
    guard: DbReplayGuard | MemoryGuard | None = None,
    write_lock: AbstractContextManager[Any] | None = None,
) -> Admitted:
    try:
        header, tensors = open_checked(
            message,
            keys=keys,
            federation_id=site.federation_id,
            round=round_number,
            spec=spec,
            site=site,
            guard=guard or DbReplayGuard(db),
        )
    except CryptoError as exc:
        if exc.code != "bad_signature":
            raise
        raise Unauthorized(
            "the update's signature does not verify against this site's registered key", code="bad_signature"
        ) from exc
    update_id = new_id()
    artifact = save_update(records, site.federation_id, update_id, message, round_number)
    try:
        with write_lock or contextlib.nullcontext(), db.session() as s:
            conn = s.connection()
            accepted = conn.execute(_COUNT, {"round_id": round_id, "samples": header.num_samples}).scalar()
            if accepted is None:
                raise Conflict(
                    f"round {round_number} closed before this update was stored", code="round_closed"
                )
            conn.execute(
                _INSERT_UPDATE,
                {
                    "id": update_id,
                    "federation_id": site.federation_id,
                    "round": round_number,
                    "participant_id": site.participant_id,
                    "nonce": header.nonce,
                    "artifact_id": artifact,
                    "num_samples": header.num_samples,
                    "size_bytes": len(message),
                    "metrics_json": header.metrics,
                    "accepted_at": utcnow(),
                },
            )
            audit.append(
                accepted_record(
                    site,
                    source_ip,
                    round=round_number,
                    update_id=update_id,
                    num_samples=header.num_samples,
                    bytes=len(message),
                ),
                s,
            )
    except DBIntegrityError:
        drop_update(vault, records, artifact)
        raise _classify(db, round_number, header.nonce) from None
    except BaseException:
        drop_update(vault, records, artifact)
        raise
    return Admitted(update_id, header, tensors, int(accepted))


def accepted_record(site: SiteIdentity, source_ip: str | None, **details: Any) -> AuditRecord:
    """The ``fl.update``/``success`` row of an accepted update (sealed, or a masked input)."""
    return AuditRecord(
        "fl.update",
        "success",
        actor_id=site.participant_id,
        actor=site.actor,
        target_type="federation",
        target_id=site.federation_id,
        source_ip=source_ip,
        details=details,
    )


def _classify(db: Database, round: int, nonce: str) -> Conflict:
    """Which unique constraint a racing insert hit: the nonce (replay) or the round slot (duplicate)."""
    with db.session() as s:
        if s.scalar(select(FederationUpdate.id).where(FederationUpdate.nonce == nonce)) is not None:
            return replayed()
    return duplicate(round)


def audit_denial(
    audit: AuditLog,
    federation_id: str,
    site: SiteIdentity | None,
    exc: BastionError,
    message: bytes | None,
    source_ip: str | None,
) -> None:
    """Every refused update leaves an ``fl.update``/``denied`` row with its reason code."""
    details: dict[str, Any] = {"reason": exc.code, "status": exc.status_code}
    if message is not None:
        details["bytes"] = len(message)
        with contextlib.suppress(BastionError):
            details["claimed_round"] = read_header(message).round
    audit.append(
        AuditRecord(
            "fl.update",
            "denied",
            actor_id=site.participant_id if site else None,
            actor=site.actor if site else None,
            target_type="federation",
            target_id=federation_id[:64],
            source_ip=source_ip,
            details=details,
        )
    )
