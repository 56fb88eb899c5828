"""One SecAgg run within a federation round (a ``SecAggRound``), as the coordinator holds it.

Also who may join one. Members are the registered, non-revoked sites in enrolment order (their SecAgg
client ids are those positions), minus the sites whose masked input an earlier SecAgg run of the same
federation round already received, minus, under client sampling, the sites not drawn for this round
and attempt. (Not a database session: those are ``Database.session()``.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from bastion.crypto import signing
from bastion.federation.secagg import (
    AdvertiseKeys,
    MaskedInput,
    SecAggServer,
    ServerStage,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from bastion.federation.secagg.config import SecAggConfig
from bastion.store import Database
from bastion.store.tables import FederationParticipant

SiteMessage = AdvertiseKeys | ShareKeys | MaskedInput | UnmaskResponse
STAGE_OF: dict[type[BaseModel], ServerStage] = {
    AdvertiseKeys: ServerStage.ADVERTISE,
    ShareKeys: ServerStage.SHARE,
    MaskedInput: ServerStage.MASK,
    UnmaskResponse: ServerStage.UNMASK,
}


@dataclass(frozen=True)
class Published:
    """One stage of a session as sites are shown it, replaced as a whole at each stage change so that a
    reader without the federation lock (the event loop) never sees a stage with another stage's
    messages. ``pending`` (who still owes this stage an answer) only shrinks, under the lock."""

    stage: ServerStage
    deadline: datetime | None
    messages: dict[int, dict[str, Any]]  # client id -> its message for this stage, as JSON
    pending: set[int]


@dataclass
class SecAggRound:
    round_number: int
    round_row_id: str
    seq: int
    config: SecAggConfig
    server: SecAggServer
    members: dict[int, str]  # client id -> participant id
    directory: dict[int, str]  # client id -> registered Ed25519 key (base64url)
    stage_deadline: datetime | None = None
    outbox: dict[int, BaseModel] = field(default_factory=dict)
    request: UnmaskRequest | None = None
    _described: dict[str, Any] | None = field(default=None, repr=False)
    published: Published | None = None

    @property
    def stage(self) -> ServerStage:
        return self.server.stage

    def publish(self) -> None:
        """Make the current stage (after a start or a stage change; lock held) what sites are shown."""
        if self.stage is ServerStage.UNMASK and self.request is not None:
            request = self.request.model_dump(mode="json")
            messages = dict.fromkeys(self.request.survivors, request)
        else:
            messages = {cid: m.model_dump(mode="json") for cid, m in self.outbox.items()}
        self.published = Published(self.stage, self.stage_deadline, messages, set(self.server.waiting_for()))

    def answered(self, client_id: int) -> None:
        """``client_id`` answered the current stage (lock held)."""
        published = self.published
        if published is not None and published.stage is self.stage:
            published.pending.discard(client_id)

    def described(self) -> dict[str, Any]:
        """The config and member directory members are shown, as JSON (built once: they never change)."""
        if self._described is None:
            self._described = {
                "config": self.config.model_dump(mode="json"),
                "directory": {
                    str(c): {"participant_id": self.members[c], "signing_public_key": k}
                    for c, k in self.directory.items()
                },
            }
        return self._described

    def client_id(self, participant_id: str) -> int | None:
        return next((c for c, p in self.members.items() if p == participant_id), None)


@dataclass(frozen=True)
class SecureResult:
    """The unmasked sum of a session, with who is in it."""

    total: Any
    count: int
    contributors: list[str]
    session: str
    max_error: float


def eligible_members(
    db: Database, federation_id: str, burned: set[str], drawn: Callable[[str], bool]
) -> tuple[dict[int, str], dict[int, str]]:
    """(client id -> participant id, client id -> registered Ed25519 key) of a new session's members."""
    with db.session() as s:
        rows = s.execute(
            select(
                FederationParticipant.id,
                FederationParticipant.signing_public_key,
                FederationParticipant.revoked_at,
            )
            .where(FederationParticipant.federation_id == federation_id)
            .order_by(FederationParticipant.created_at, FederationParticipant.id)
        ).all()
    members: dict[int, str] = {}
    directory: dict[int, str] = {}
    for index, (pid, key, revoked) in enumerate(rows, start=1):
        if key is None or revoked is not None or pid in burned:
            continue
        if not drawn(pid):  # client sampling: see Coordinator.is_selected
            continue
        members[index], directory[index] = pid, key
    return members, directory


def identity_keys(directory: dict[int, str]) -> dict[int, Any]:
    return {cid: signing.decode_public_key(key) for cid, key in directory.items()}
