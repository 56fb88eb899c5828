"""Rows as the JSON the API returns: no credential hashes, times in ISO 8601 (UTC)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from bastion.store.tables import Federation, FederationParticipant, FederationRound


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def federation_view(fed: Federation | Row[Any]) -> dict[str, Any]:
    return {
        "id": fed.id,
        "project_id": fed.project_id,
        "name": fed.name,
        "state": fed.state,
        "failure_reason": fed.failure_reason,
        "strategy": fed.strategy,
        "rounds": fed.rounds,
        "current_round": fed.current_round,
        "completed_rounds": fed.completed_rounds,
        "min_clients": fed.min_clients,
        "target_clients": fed.target_clients,
        "round_timeout_s": fed.round_timeout_s,
        "max_round_attempts": fed.max_round_attempts,
        "global_version": fed.global_version,
        "server_signing_key": fed.signing_public_key,
        "server_sealing_key": fed.sealing_public_key,
        "created_at": _iso(fed.created_at),
        "finished_at": _iso(fed.finished_at),
    }


def participant_view(row: FederationParticipant) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "credential_prefix": row.credential_prefix,
        "registered": row.signing_public_key is not None,
        "signing_public_key": row.signing_public_key,
        "created_at": _iso(row.created_at),
        "registered_at": _iso(row.registered_at),
        "last_seen_at": _iso(row.last_seen_at),
        "revoked_at": _iso(row.revoked_at),
    }


def round_view(row: FederationRound) -> dict[str, Any]:
    return {
        "round": row.number,
        "state": row.state,
        "attempt": row.attempt,
        "opened_at": _iso(row.opened_at),
        "deadline": _iso(row.deadline),
        "closed_at": _iso(row.closed_at),
        "close_reason": row.close_reason,
        "updates": row.accepted,
        "num_samples": row.num_samples,
        "metrics": row.metrics_json or {},
        "base_version": row.base_version,
        "global_version": row.result_version,
        "model_version": row.model_version,
    }
