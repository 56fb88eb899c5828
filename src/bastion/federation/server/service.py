"""What a coordinator does with federations: create, enrol sites, watch rounds, swap the global model.

Every lookup is scoped to the owner: another user's federation is reported as not found. Creating a
federation builds the initial model from its JSON spec (torch is imported here, lazily, and only for
that), generates the federation's key pair into the vault and opens round 1. Round 1's deadline
starts once ``min_clients`` sites have registered, so a federation is not failed for sites that have
not been set up yet.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from bastion.audit import AuditRecord
from bastion.auth.principal import Principal
from bastion.catalog.stored import release
from bastion.errors import BastionError, Conflict, Forbidden, Invalid, NotFound
from bastion.federation.server import artifacts, credentials, sharing
from bastion.federation.server.config import FederationConfig, check_strategy
from bastion.federation.server.coordinator import Coordinator
from bastion.federation.server.keys import ServerKeys, keys_artifact
from bastion.federation.server.privacy import privacy_report
from bastion.federation.server.states import FEDERATION, LIVE, FederationState, RoundState
from bastion.federation.server.views import federation_view, participant_view, round_view
from bastion.federation.tensors import TensorSpec, decode, encode, validate
from bastion.ml.fl_init import initial_parameters as draw
from bastion.projects import policy
from bastion.store.base import new_id
from bastion.store.paging import Keyset
from bastion.store.tables import (
    Federation,
    FederationGuest,
    FederationParticipant,
    FederationRound,
    FederationUpdate,
)

ONLINE_WINDOW = timedelta(seconds=60)
FEDERATIONS = Keyset(Federation.created_at, Federation.id, descending=False)
ROUNDS = Keyset(FederationRound.number, descending=False)  # unique per federation
PARTICIPANTS = Keyset(FederationParticipant.created_at, FederationParticipant.id, descending=False)


def initial_parameters(cfg: FederationConfig, bases: Any = None) -> dict[str, Any]:
    from bastion.llm.federated import initial_adapter, is_lora

    if is_lora(cfg.model):  # a LoRA adapter on a registered base model (fills cfg.model for sites)
        return initial_adapter(cfg.model, bases, cfg.seed)

    return draw(cfg.model, seed=cfg.seed)  # NumPy: creating a federation must not import torch


MAX_MODEL_PARAMETERS = 10_000_000
MAX_FEDERATIONS_PER_USER = 20


class FederationService:
    def __init__(
        self,
        coordinator: Coordinator,
        *,
        max_parameters: int = MAX_MODEL_PARAMETERS,
        max_per_user: int = MAX_FEDERATIONS_PER_USER,
    ) -> None:
        self.coordinator = coordinator
        self.db, self.vault, self.audit = coordinator.db, coordinator.vault, coordinator.audit
        self.max_parameters = max_parameters
        self.max_per_user = max_per_user

    def _check_limits(self, principal: Principal, cfg: FederationConfig) -> None:
        """The model's size from its spec (before any weight is allocated) and the owner's quota."""
        from bastion.llm.federated import is_lora
        from bastion.ml.fl_config import parameter_count, parse_model_config

        # A LoRA adapter's size follows from a base model an admin registered, not from the spec.
        count = 0 if is_lora(cfg.model) else parameter_count(parse_model_config(cfg.model))
        if count > self.max_parameters:
            raise Invalid(
                f"the model has {count} parameters, over the limit of {self.max_parameters} "
                "(BASTION_FL_MAX_MODEL_PARAMETERS)",
                code="model_too_large",
                parameters=count,
                limit=self.max_parameters,
            )
        with self.db.session() as s:
            kept = s.scalar(
                select(func.count())
                .select_from(Federation)
                .where(Federation.owner_id == principal.user_id, Federation.state != FederationState.ARCHIVED)
            )
        if int(kept or 0) >= self.max_per_user:
            raise Conflict(
                f"you have {kept} federations, the limit (BASTION_FL_MAX_FEDERATIONS_PER_USER); "
                "delete one first",
                code="federation_limit",
            )

    # -- lookups ----------------------------------------------------------------------------------
    @staticmethod
    def _owned(
        s: Session, principal: Principal, federation_id: str, action: policy.Action = policy.Action.READ
    ) -> Federation:
        """A federation the caller may ``action``: by project role, or as an invited guest (read only)."""
        return FederationService._access(s, principal, federation_id, action)[0]

    @staticmethod
    def _access(
        s: Session,
        principal: Principal,
        federation_id: str,
        action: policy.Action = policy.Action.READ,
        *,
        guest_may: bool = False,
    ) -> tuple[Federation, sharing.Viewer]:
        """The federation and how the caller sees it. Project members pass the project policy (404
        for strangers, 403 for a role too small); an invited guest reads (and enrols when
        ``guest_may``) but changes nothing else (403)."""
        fed = s.get(Federation, federation_id) if len(federation_id) <= 36 else None
        if fed is None:
            raise NotFound("federation not found")
        try:
            policy.authorize(
                s, principal, fed.project_id, action, NotFound("federation not found"), owner_id=fed.owner_id
            )
            return fed, sharing.viewer_of(principal, False, fed.visibility)
        except NotFound:
            if not sharing.is_guest(s, principal.user_id, fed.id):
                raise
        if action != policy.Action.READ and not guest_may:
            raise Forbidden(
                "an invited guest may read the federation and enrol sites; the coordinator's project changes it",
                code="federation_guest",
            )
        return fed, sharing.viewer_of(principal, True, fed.visibility)

    def _sites(
        self, s: Session, viewer: sharing.Viewer, fed_id: str, rows: list[FederationParticipant]
    ) -> list[dict[str, Any]]:
        """Participant views as the viewer may see them (one query for every site's metrics)."""
        shown = [r for r in rows if viewer.shows(r)]
        metrics = sharing.latest_metrics(s, fed_id, [r.id for r in shown])
        return [viewer.view(r, participant_view(r), metrics.get(r.id)) for r in shown]

    def _record(
        self, s: Session, principal: Principal, action: str, fid: str, ip: str | None, **details: Any
    ) -> None:
        self.audit.append(
            AuditRecord(
                action,
                "success",
                principal.user_id,
                principal.username,
                "federation",
                fid,
                ip,
                details,
            ),
            s,
        )

    # -- create -----------------------------------------------------------------------------------
    def create(
        self, principal: Principal, cfg: FederationConfig, source_ip: str | None, project: str | None = None
    ) -> dict[str, Any]:
        check_strategy(cfg)
        self._check_limits(principal, cfg)
        if cfg.evaluation.server_dataset:
            from bastion.federation.sitedata import check_source

            check_source(cfg.evaluation.server_dataset)
        from bastion.llm.base_models import BaseModels

        params = initial_parameters(cfg, BaseModels(self.db, self.audit))
        spec = TensorSpec.from_tensors(params)
        blob = encode(params)
        fid = new_id()
        keys = ServerKeys.generate()
        keys.store(self.vault, fid)
        try:
            version = artifacts.save_global(self.vault, fid, blob, 0)
            with self.db.session() as s:
                s.add(
                    Federation(
                        id=fid,
                        owner_id=principal.user_id,
                        project_id=policy.target(s, principal, project),
                        name=cfg.name,
                        state=FederationState.WAITING,
                        config_json=cfg.model_dump_json(),
                        spec_json=spec.to_json(),
                        strategy=cfg.strategy,
                        rounds=cfg.rounds,
                        min_clients=cfg.min_clients,
                        target_clients=cfg.quorum,
                        round_timeout_s=cfg.round_timeout_s,
                        max_round_attempts=cfg.max_round_attempts,
                        current_round=1,
                        completed_rounds=0,
                        global_version=version,
                        sealing_public_key=keys.sealing_public,
                        signing_public_key=keys.signing_public,
                    )
                )
                s.flush()
                s.add(
                    FederationRound(
                        federation_id=fid,
                        number=1,
                        state=RoundState.OPEN,
                        attempt=1,
                        base_version=version,
                        accepted=0,
                        num_samples=0,
                        metrics_json={},
                    )
                )
                self._record(
                    s,
                    principal,
                    "fl.federation.create",
                    fid,
                    source_ip,
                    name=cfg.name,
                    strategy=cfg.strategy,
                    rounds=cfg.rounds,
                    parameters=spec.num_params,
                )
        except DBIntegrityError:
            self._drop_artifacts(fid)
            raise Conflict(
                f"you already have a federation named {cfg.name!r}", code="federation_exists"
            ) from None
        except BaseException:
            self._drop_artifacts(fid)
            raise
        self.coordinator.publish(
            principal.user_id,
            cfg.name,
            cfg,
            blob,
            {},
            {"federation_id": fid, "round": 0, "source": "initial", "global_version": version},
        )
        self.coordinator.evaluator.prepare(fid, cfg)
        return self.get(principal, fid)

    def _drop_artifacts(self, fid: str) -> None:
        """Delete the federation's own artifacts; global-model versions that registry versions still
        name stay (they are those versions' only copy: bastion.catalog.stored)."""
        for artifact in (keys_artifact(fid), artifacts.state_artifact(fid)):
            with contextlib.suppress(NotFound):
                self.vault.delete(artifact)
        with self.db.session() as s:
            release(s, self.vault, artifacts.global_artifact(fid))

    # -- archive ----------------------------------------------------------------------------------
    def archive(self, principal: Principal, federation_id: str, source_ip: str | None) -> dict[str, Any]:
        """End a federation for good: state ``archived``, sites refused, its vault artifacts deleted.

        The rows stay (rounds, metrics and the audit trail remain readable); the model, the keys and
        every received update are removed, and it no longer counts against the owner's quota. Global
        models that registry versions name stay in the vault as those versions' bytes.
        """
        with self.db.session() as s:
            fed = self._owned(s, principal, federation_id, policy.Action.WRITE)
            if fed.state == FederationState.ARCHIVED:
                return federation_view(fed)
            now = self.coordinator.clock()
            fed.state = FEDERATION.check_move(fed.state, FederationState.ARCHIVED)
            fed.finished_at, fed.updated_at = now, now
            s.execute(
                update(FederationRound)
                .where(FederationRound.federation_id == fed.id, FederationRound.state == RoundState.OPEN)
                .values(state=RoundState.FAILED, closed_at=now, close_reason="archived")
            )
            stored = s.scalars(
                select(FederationUpdate.artifact_id).where(FederationUpdate.federation_id == fed.id)
            ).all()
            self._record(s, principal, "fl.federation.archive", fed.id, source_ip)
        for artifact_id in stored:
            if "/" not in artifact_id:  # an update stored before records (h41): its own artifact
                artifacts.drop_update(self.vault, self.coordinator.records, artifact_id)
        anchor = artifacts.updates_anchor(federation_id)  # every record of the federation goes with it
        with contextlib.suppress(NotFound):
            self.vault.delete(anchor)
        self.coordinator.records.forget(anchor)
        with self.coordinator.lock(federation_id):
            self.coordinator.forget(federation_id)
        self.coordinator.changed(federation_id)
        self._drop_artifacts(federation_id)
        self.coordinator.sites.clear()
        with self.db.session() as s:
            return federation_view(self._owned(s, principal, federation_id))

    # -- sharing across users (see sharing.py) -------------------------------------------------------
    def sharing(self, principal: Principal, federation_id: str) -> dict[str, Any]:
        """Visibility and invited guests (the coordinator's project only: guests get 403)."""
        with self.db.session() as s:
            fed, viewer = self._access(s, principal, federation_id)
            if viewer.guest:
                raise Forbidden("only the coordinator's project sees the guest list", code="federation_guest")
            return {"visibility": fed.visibility, "guests": sharing.guests(s, fed.id)}

    def set_visibility(
        self, principal: Principal, federation_id: str, visibility: str, ip: str | None
    ) -> dict[str, Any]:
        with self.db.session() as s:
            fed = self._owned(s, principal, federation_id, policy.Action.WRITE)
            fed.visibility = sharing.check_visibility(visibility)
            self._record(s, principal, "fl.federation.visibility", fed.id, ip, visibility=visibility)
        return self.sharing(principal, federation_id)

    def invite(
        self, principal: Principal, federation_id: str, user_ref: str, ip: str | None
    ) -> dict[str, Any]:
        """Invite a user (of any project) to enrol their own sites; audited."""
        with self.db.session() as s:
            fed = self._owned(s, principal, federation_id, policy.Action.WRITE)
            user = sharing.find_user(s, user_ref)
            if s.get(FederationGuest, (fed.id, user.id)) is not None:
                raise Conflict(f"{user.username} is already invited", code="already_invited")
            s.add(FederationGuest(federation_id=fed.id, user_id=user.id, invited_by=principal.user_id))
            self._record(s, principal, "fl.guest.invite", fed.id, ip, user_id=user.id)
        return self.sharing(principal, federation_id)

    def uninvite(
        self, principal: Principal, federation_id: str, user_ref: str, ip: str | None
    ) -> dict[str, Any]:
        """Withdraw an invitation: the guest loses access; sites already enrolled stay until revoked."""
        with self.db.session() as s:
            fed = self._owned(s, principal, federation_id, policy.Action.WRITE)
            user = sharing.find_user(s, user_ref)
            row = s.get(FederationGuest, (fed.id, user.id))
            if row is None:
                raise NotFound("no such guest", code="guest_not_found")
            s.delete(row)
            self._record(s, principal, "fl.guest.remove", fed.id, ip, user_id=user.id)
        return self.sharing(principal, federation_id)

    # -- read -------------------------------------------------------------------------------------
    def list_for(
        self, principal: Principal, limit: int = 100, cursor: str | None = None, project: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The federations of the caller's projects (or of one) and those they are invited to, oldest
        first, and the next page's cursor (bastion.federation.server.listing)."""
        from bastion.federation.server.listing import FEDERATION_LIST

        with self.db.reader() as conn:
            feds = FEDERATION_LIST.rows(conn, principal, project, cursor, limit)
        return [federation_view(f) for f in feds[:limit]], FEDERATIONS.next_cursor(feds, limit)

    def get(self, principal: Principal, federation_id: str) -> dict[str, Any]:
        self._exists(principal, federation_id)
        self.coordinator.check_deadline(federation_id)
        with self.db.session() as s:
            fed, viewer = self._access(s, principal, federation_id)
            out = federation_view(fed)
            out["config"] = json.loads(fed.config_json)
            out["history"] = [round_view(r) for r in self._rounds(s, fed.id)]
            out["participants"] = self._sites(s, viewer, fed.id, self._participants(s, fed.id))
            out.update(self._privacy(fed))
            return out

    def _privacy(self, fed: Federation) -> dict[str, Any]:
        """Privacy spent so far and the secure-aggregation session, for federations that use them."""
        cfg, _spec = self.coordinator.meta(fed.id)
        out: dict[str, Any] = {}
        report = privacy_report(cfg.dp(), fed.completed_rounds, fed.rounds)
        if report is not None:
            report["stopped_by_budget"] = (
                fed.state == FederationState.COMPLETED and fed.completed_rounds < fed.rounds
            )
            out["privacy"] = report
        if cfg.secure:
            out["secure_aggregation"] = self.coordinator.secure.status(fed.id, fed.current_round)
        return out

    def _exists(self, principal: Principal, federation_id: str) -> bool:
        with self.db.session() as s:
            self._owned(s, principal, federation_id)
        return True

    @staticmethod
    def _rounds(s: Session, fid: str) -> list[FederationRound]:
        return list(
            s.scalars(
                select(FederationRound)
                .where(FederationRound.federation_id == fid)
                .order_by(FederationRound.number)
            )
        )

    @staticmethod
    def _participants(s: Session, fid: str) -> list[FederationParticipant]:
        return list(
            s.scalars(
                select(FederationParticipant)
                .where(FederationParticipant.federation_id == fid)
                .order_by(FederationParticipant.created_at)
            )
        )

    def status(self, principal: Principal, federation_id: str) -> dict[str, Any]:
        """seeds/001's ``/status`` shape (round, pending/required updates, clients online), and more."""
        self._exists(principal, federation_id)
        self.coordinator.check_deadline(federation_id)
        now = self.coordinator.clock()
        with self.db.session() as s:
            fed = self._owned(s, principal, federation_id)
            _fed, rnd = self.coordinator.current(s, fed.id)
            online = s.scalar(
                select(func.count(FederationParticipant.id)).where(
                    FederationParticipant.federation_id == fed.id,
                    FederationParticipant.revoked_at.is_(None),
                    FederationParticipant.last_seen_at >= now - ONLINE_WINDOW,
                )
            )
            enrolled = s.scalar(
                select(func.count(FederationParticipant.id)).where(
                    FederationParticipant.federation_id == fed.id
                )
            )
            live = fed.state in LIVE and rnd is not None
            return {
                "federation_id": fed.id,
                "state": fed.state,
                "round": fed.current_round,
                "round_state": rnd.state if rnd else None,
                "pending_updates": rnd.accepted if live and rnd else 0,
                "required_updates": fed.target_clients,
                "min_updates": fed.min_clients,
                "clients_online": int(online or 0),
                "participants": int(enrolled or 0),
                "attempt": rnd.attempt if rnd else None,
                "deadline": rnd.deadline.isoformat() if rnd and rnd.deadline else None,
                "completed_rounds": fed.completed_rounds,
                "rounds": fed.rounds,
                "failure_reason": fed.failure_reason,
                **self._privacy(fed),
            }

    def rounds(
        self, principal: Principal, federation_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Rounds in order (attempts of a round by their id), and the next page's cursor."""
        self._exists(principal, federation_id)
        self.coordinator.check_deadline(federation_id)
        with self.db.session() as s:
            fed = self._owned(s, principal, federation_id)
            stmt = select(FederationRound).where(FederationRound.federation_id == fed.id)
            rows = list(s.scalars(ROUNDS.apply(stmt, cursor, limit)))
            return [round_view(r) for r in rows[:limit]], ROUNDS.next_cursor(rows, limit)

    # -- participants -----------------------------------------------------------------------------
    def enroll(
        self, principal: Principal, federation_id: str, name: str, source_ip: str | None
    ) -> dict[str, Any]:
        token = credentials.generate()
        try:
            with self.db.session() as s:
                fed, _viewer = self._access(s, principal, federation_id, policy.Action.WRITE, guest_may=True)
                if fed.state not in LIVE:
                    raise Conflict(f"the federation is {fed.state}", code="federation_finished")
                row = FederationParticipant(
                    federation_id=fed.id,
                    enrolled_by=principal.user_id,
                    name=name,
                    credential_hash=credentials.digest(token),
                    credential_prefix=credentials.display_prefix(token),
                )
                s.add(row)
                s.flush()
                self._record(
                    s, principal, "fl.participant.enroll", fed.id, source_ip, participant=row.id, name=name
                )
                out = participant_view(row)
                signing_key = fed.signing_public_key
        except DBIntegrityError:
            raise Conflict(f"a site named {name!r} is already enrolled", code="participant_exists") from None
        return {**out, "federation_id": federation_id, "token": token, "server_signing_key": signing_key}

    def participants(
        self, principal: Principal, federation_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Enrolled sites in enrolment order, and the next page's cursor."""
        with self.db.session() as s:
            fed, viewer = self._access(s, principal, federation_id)
            stmt = select(FederationParticipant).where(FederationParticipant.federation_id == fed.id)
            if viewer.guest and viewer.visibility == "aggregates":
                stmt = stmt.where(FederationParticipant.enrolled_by == principal.user_id)
            rows = list(s.scalars(PARTICIPANTS.apply(stmt, cursor, limit)))
            return self._sites(s, viewer, fed.id, rows[:limit]), PARTICIPANTS.next_cursor(rows, limit)

    def participant(self, principal: Principal, federation_id: str, participant_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            fed, viewer = self._access(s, principal, federation_id)
            row = s.get(FederationParticipant, participant_id) if len(participant_id) <= 36 else None
            if row is None or row.federation_id != fed.id or not viewer.shows(row):
                raise NotFound("participant not found")
            return self._sites(s, viewer, fed.id, [row])[0]

    def revoke(
        self, principal: Principal, federation_id: str, participant_id: str, ip: str | None
    ) -> dict[str, Any]:
        with self.db.session() as s:
            fed, viewer = self._access(s, principal, federation_id, policy.Action.WRITE, guest_may=True)
            row = s.get(FederationParticipant, participant_id)
            if row is None or row.federation_id != fed.id or not viewer.may_revoke(row):
                raise NotFound("participant not found")
            if row.revoked_at is None:
                row.revoked_at = self.coordinator.clock()
                self._record(s, principal, "fl.participant.revoke", fed.id, ip, participant=row.id)
            out = participant_view(row)
        self.coordinator.sites.clear()
        return out

    # -- the global model (fine-tune hand-off) ---------------------------------------------------
    def download_model(self, principal: Principal, federation_id: str) -> tuple[int, bytes]:
        with self.db.session() as s:
            fed = self._owned(s, principal, federation_id)
            version, archived = fed.global_version, fed.state == FederationState.ARCHIVED
        if archived:  # archiving released the model; registry versions may still hold its bytes
            raise NotFound(
                f"artifact {artifacts.global_artifact(federation_id)!r} version {version} not found"
            )
        return version, artifacts.global_bytes(self.vault, federation_id, version)

    def model_limit(self, principal: Principal, federation_id: str) -> int:
        self._exists(principal, federation_id)
        return self.coordinator.meta(federation_id)[1].max_encoded_bytes()

    def deny_upload(
        self, principal: Principal, federation_id: str, exc: BastionError, ip: str | None
    ) -> None:
        self.audit.append(
            AuditRecord(
                "fl.model.upload",
                "denied",
                principal.user_id,
                principal.username,
                "federation",
                federation_id,
                ip,
                {"reason": exc.code, "status": exc.status_code},
            )
        )

    def upload_model(
        self, principal: Principal, federation_id: str, data: bytes, ip: str | None
    ) -> dict[str, Any]:
        """A coordinator's new global model (e.g. fine-tuned): safetensors, float32, the federation's shapes.

        While the federation runs, the open round is superseded: its updates were trained from the old
        model, so they are set aside and a new round opens from the uploaded one (sites see the new
        round number and retrain). Audited as ``fl.model.upload``.
        """
        self._exists(principal, federation_id)
        cfg, spec = self.coordinator.meta(federation_id)
        try:
            tensors = decode(data, max_bytes=spec.max_encoded_bytes())
            validate(tensors, spec)
        except BastionError as exc:
            self.deny_upload(principal, federation_id, exc, ip)
            raise
        blob = encode(tensors)
        coordinator = self.coordinator
        with coordinator.lock(federation_id):
            version = artifacts.save_global(self.vault, federation_id, blob, -1)
            now = coordinator.clock()
            with self.db.session() as s:
                fed = self._owned(s, principal, federation_id, policy.Action.WRITE)
                _fed, rnd = coordinator.current(s, federation_id)
                details: dict[str, Any] = {"global_version": version, "bytes": len(data)}
                if fed.state in LIVE and rnd is not None:
                    replaced = s.execute(
                        update(FederationRound)
                        .where(FederationRound.id == rnd.id, FederationRound.state == RoundState.OPEN)
                        .values(state=RoundState.SUPERSEDED, closed_at=now, close_reason="superseded")
                    )
                    if replaced.rowcount != 1:  # type: ignore[attr-defined]
                        raise Conflict("the open round is closing; retry in a moment", code="round_closing")
                    s.add(
                        FederationRound(
                            federation_id=fed.id,
                            number=rnd.number + 1,
                            state=RoundState.OPEN,
                            attempt=1,
                            opened_at=now,
                            deadline=now + timedelta(seconds=fed.round_timeout_s)
                            if fed.state == FederationState.RUNNING
                            else None,
                            base_version=version,
                            accepted=0,
                            num_samples=0,
                            metrics_json={},
                        )
                    )
                    fed.current_round = rnd.number + 1
                    details.update(superseded_round=rnd.number, discarded_updates=rnd.accepted)
                fed.global_version = version
                fed.updated_at = now
                self._record(s, principal, "fl.model.upload", fed.id, ip, **details)
                owner, name = fed.owner_id, fed.name
            coordinator.forget(federation_id)
        coordinator.changed(federation_id)
        model_version = coordinator.publish(
            owner,
            name,
            cfg,
            blob,
            {},
            {
                "federation_id": federation_id,
                "source": "upload",
                "uploaded_by": principal.username,
                "global_version": version,
            },
        )
        return {**details, "federation_id": federation_id, "model_version": model_version}
