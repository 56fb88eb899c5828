"""Round transitions in the database: each is one transaction, guarded, with its audit row.

Every transition is a conditional UPDATE (``... WHERE state = 'open'``, the allowed moves in
``states``), so when two workers (or the
ticker and a request) race for the same round, exactly one wins and the other sees nothing to do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.catalog.model_versions import ModelVersions
from bastion.catalog.stored import RAW, StoredRef
from bastion.errors import BastionError
from bastion.federation.server.artifacts import global_artifact
from bastion.federation.server.config import FederationConfig
from bastion.federation.server.states import FEDERATION, ROUND, FederationState, RoundState
from bastion.store import Database
from bastion.store.base import new_id
from bastion.store.tables import Federation, FederationRound

_log = structlog.get_logger("bastion.federation")

# Core statements for the close, built once (as admission's are): the ORM's bulk-update path cost
# more than the statements themselves (cProfile: ~40% of ``commit_close`` and ~60% of ``claim``).
# The SET clauses of _CLOSE_ROUND and _ADVANCE are the columns named in each call's parameters.
_ROUNDS, _FEDS = cast(Table, FederationRound.__table__), cast(Table, Federation.__table__)
_CLAIM = (
    update(_ROUNDS)
    .where(_ROUNDS.c.id == bindparam("round_id"), _ROUNDS.c.state.in_(bindparam("states", expanding=True)))
    .values(state=RoundState.CLOSING.value)
    .returning(_ROUNDS.c.accepted)
)
_CLOSE_ROUND = update(_ROUNDS).where(_ROUNDS.c.id == bindparam("round_id"))
_ADVANCE = update(_FEDS).where(_FEDS.c.id == bindparam("federation_id"))
_OPEN_ROUND = insert(_ROUNDS)
_SET_MODEL = (
    update(_ROUNDS).where(_ROUNDS.c.id == bindparam("round_id")).values(model_version=bindparam("version"))
)

# Registers the closing round's global model inside the close's transaction (see commit_close).
Publisher = Callable[[Session], int | None]


def system_record(action: str, federation_id: str, **details: Any) -> AuditRecord:
    return AuditRecord(
        action, "success", actor="system", target_type="federation", target_id=federation_id, details=details
    )


def claim(db: Database, round_id: str, allowed: tuple[RoundState, ...]) -> int | None:
    """``open`` -> ``closing`` (or a stuck ``closing`` re-claimed): from here on the round admits no update.

    Returns how many updates the round counted (final from here on), or None if it was not claimed.
    """
    for state in allowed:
        ROUND.check_move(state, RoundState.CLOSING)
    with db.session() as s:
        accepted = (
            s.connection()
            .execute(_CLAIM, {"round_id": round_id, "states": [str(state.value) for state in allowed]})
            .scalar()
        )
    return None if accepted is None else int(accepted)


def commit_close(
    db: Database,
    audit: AuditLog,
    fed: Federation,
    rnd: FederationRound,
    *,
    now: datetime,
    reason: str,
    result_version: int,
    state_version: int,
    metrics: dict[str, float],
    contributors: list[str],
    stop_reason: str | None = None,
    accepted: int | None = None,
    publish: Publisher | None = None,
) -> FederationRound | None:
    """Close the round and open the next one (or complete the federation); returns the new round.

    ``stop_reason`` completes the federation early (the privacy budget allows no further round).
    ``publish`` registers the global model in the same transaction (its own savepoint: a registry
    failure never fails the round), so a crash can never leave a closed round without its version.
    """
    done = fed.completed_rounds + 1 >= fed.rounds or stop_reason is not None
    next_round: FederationRound | None = None
    round_values: dict[str, Any] = {
        "round_id": rnd.id,
        "state": RoundState.CLOSED.value,  # claimed (closing) by this closer
        "closed_at": now,
        "close_reason": reason,
        "result_version": result_version,
        "strategy_state_version": state_version,
        "metrics_json": metrics,
    }
    if accepted is not None:
        round_values["accepted"] = accepted
    values: dict[str, Any] = {
        "federation_id": fed.id,
        "completed_rounds": fed.completed_rounds + 1,
        "global_version": result_version,
        "updated_at": now,
    }
    if done:
        values.update(
            state=FEDERATION.check_move(fed.state, FederationState.COMPLETED).value, finished_at=now
        )
    else:
        values.update(
            state=FEDERATION.check_move(fed.state, FederationState.RUNNING).value,
            current_round=rnd.number + 1,
        )
        next_round = FederationRound(
            id=new_id(),
            federation_id=fed.id,
            number=rnd.number + 1,
            state=RoundState.OPEN.value,
            attempt=1,
            opened_at=now,
            deadline=now + timedelta(seconds=fed.round_timeout_s),
            base_version=result_version,
            accepted=0,
            num_samples=0,
            metrics_json={},
        )
    with db.session() as s:
        conn = s.connection()
        conn.execute(_CLOSE_ROUND, round_values)
        if next_round is not None:
            conn.execute(_OPEN_ROUND, {c: getattr(next_round, c) for c in _OPENED})
        conn.execute(_ADVANCE, values)
        audit.append(
            system_record(
                "fl.round.close",
                fed.id,
                round=rnd.number,
                reason=reason,
                updates=len(contributors),
                global_version=result_version,
                metrics={k: round(v, 6) for k, v in metrics.items()},
            ),
            s,
        )
        if done:
            details: dict[str, Any] = {"rounds": fed.completed_rounds + 1, "planned_rounds": fed.rounds}
            if stop_reason is not None:
                details["reason"] = stop_reason
            audit.append(system_record("fl.federation.complete", fed.id, **details), s)
        version = publish(s) if publish is not None else None
        if version is not None:
            conn.execute(_SET_MODEL, {"round_id": rnd.id, "version": version})
    return next_round


# The columns a new round is inserted with (the rest keep their defaults: NULL).
_OPENED = (
    "id",
    "federation_id",
    "number",
    "state",
    "attempt",
    "opened_at",
    "deadline",
    "base_version",
    "accepted",
    "num_samples",
    "metrics_json",
)


def reopen(db: Database, audit: AuditLog, fed: Federation, rnd: FederationRound, *, now: datetime) -> None:
    """A secure round whose unmasked sum was lost (a crash while closing) runs again from the start."""
    with db.session() as s:
        s.execute(
            update(FederationRound)
            .where(FederationRound.id == rnd.id, FederationRound.state == RoundState.CLOSING)
            .values(
                state=RoundState.OPEN,
                attempt=rnd.attempt + 1,
                deadline=now + timedelta(seconds=fed.round_timeout_s),
            )
        )
        audit.append(system_record("fl.round.retry", fed.id, round=rnd.number, attempt=rnd.attempt + 1), s)


def retry(db: Database, audit: AuditLog, fed: Federation, rnd: FederationRound, *, now: datetime) -> None:
    """A round short of ``min_clients`` at its deadline gets another one, keeping the updates it has."""
    with db.session() as s:
        s.execute(
            update(FederationRound)
            .where(FederationRound.id == rnd.id, FederationRound.state == RoundState.OPEN)
            .values(attempt=rnd.attempt + 1, deadline=now + timedelta(seconds=fed.round_timeout_s))
        )
        audit.append(
            system_record(
                "fl.round.retry",
                fed.id,
                round=rnd.number,
                attempt=rnd.attempt + 1,
                accepted=rnd.accepted,
                min_clients=fed.min_clients,
            ),
            s,
        )


def fail(
    db: Database,
    audit: AuditLog,
    federation_id: str,
    round_id: str,
    *,
    now: datetime,
    reason: str,
    close_reason: str,
    round_states: tuple[RoundState, ...] = (RoundState.OPEN, RoundState.CLOSING),
) -> None:
    """The round fails and takes the federation with it, with a reason a coordinator can act on."""
    for state in round_states:
        ROUND.check_move(state, RoundState.FAILED)
    with db.session() as s:
        s.execute(
            update(FederationRound)
            .where(FederationRound.id == round_id, FederationRound.state.in_(round_states))
            .values(state=RoundState.FAILED, closed_at=now, close_reason=close_reason)
        )
        s.execute(
            update(Federation)
            .where(
                Federation.id == federation_id,
                Federation.state.in_(FEDERATION.sources(FederationState.FAILED)),
            )
            .values(state=FederationState.FAILED, failure_reason=reason, finished_at=now, updated_at=now)
        )
        audit.append(system_record("fl.federation.fail", federation_id, reason=reason), s)


def registry_inputs(cfg: FederationConfig) -> dict[str, Any]:
    """What the registry needs to predict with a global model on raw rows, like a job's model:
    feature names, classes, preprocessing (declared features, or a built-in's standardisation) and
    the network in the job models' shape (the federated MLP has the same layers). Empty when the
    inputs are unknown (image models, or CSV sites without declared features)."""
    model = cfg.model
    if model.get("type") != "tabular_mlp":
        return {}
    inputs: dict[str, Any] | None
    if cfg.features is not None:
        inputs = cfg.features.model_config_part()
    elif cfg.evaluation.server_dataset:
        inputs = _builtin_inputs(
            cfg.evaluation.server_dataset, cfg.evaluation.holdout_fraction, cfg.evaluation.split_seed
        )
        if inputs is None or len(inputs["feature_names"]) != model.get("in_features"):
            return {}
    else:
        return {}
    return {
        **inputs,
        "model_type": "federated_tabular_mlp",
        "architecture": {
            "n_inputs": int(model["in_features"]),
            "hidden": list(model.get("hidden") or [64]),
            "n_outputs": int(model["num_classes"]),
            "activation": "relu",
            "dropout": float(model.get("dropout") or 0.0),
        },
    }


@functools.lru_cache(maxsize=16)
def _builtin_inputs(source: str, holdout_fraction: float, split_seed: int) -> dict[str, Any] | None:
    from bastion.federation.sitedata import builtin_preprocessing

    return builtin_preprocessing(source, {"holdout_fraction": holdout_fraction, "split_seed": split_seed})


def publish(
    registry: ModelVersions | None,
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
    """Register a global model version in the model registry; a failure there never fails a round.

    The version refers to the global model's own vault version (``lineage["global_version"]`` of
    ``flg-<federation>``): the bytes are stored once (bastion.catalog.stored). ``project_id`` (the
    federation's) spares the registry looking it up; with ``session`` the version is written in the
    caller's transaction, in a savepoint that any failure rolls back alone (the caller's work stays).
    """
    if registry is None:
        return None
    from bastion.llm.federated import registry_config

    at = lineage.get("global_version")
    stored = StoredRef(global_artifact(lineage["federation_id"]), at, RAW) if isinstance(at, int) else None

    inputs = registry_inputs(cfg)
    try:
        view = registry.register(
            owner_id,
            f"fl-{name}",
            blob,
            "safetensors",
            config={
                "format": "safetensors",
                "origin": "federation",
                "federation_id": lineage["federation_id"],
                "model": cfg.model,
                **inputs,
                **registry_config(cfg.model),
            },
            metrics=metrics,
            lineage=lineage,
            input_schema={"features": inputs.get("feature_names", [])},
            primary_metric="server_accuracy" if cfg.evaluation.server_dataset else "val_accuracy",
            project_id=project_id,
            stored=stored,
            session=session,
        )
    except BastionError as exc:
        _log.warning("fl_registry_failed", federation=lineage["federation_id"], error=exc.message)
        return None
    except Exception:
        if session is None:
            raise
        # inside a round's close: its savepoint is rolled back; the close itself must still commit
        _log.exception("fl_registry_failed", federation=lineage["federation_id"])
        return None
    return view.version
