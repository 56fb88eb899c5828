"""An uploaded transitions table (``state_*``, ``action``, ``reward``, ``next_state_*``, ``done``).

Checked twice: at submit time from the upload's stored schema (names and null counts, no data
loaded), and in the job process on the values themselves. Rows are read in order: a row after one
with ``done`` = 1 starts a new episode (used for the logged policy's return and the initial states
of the value estimate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bastion.errors import Invalid

_STATE = re.compile(r"^state_(\w+)$")
MAX_ACTIONS = 64
CODE = "invalid_transitions"


def state_columns(columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``state_*`` columns and their ``next_state_*`` partners, or Invalid naming what is missing."""
    states = [c for c in columns if _STATE.match(c)]
    missing = [c for c in ("action", "reward", "done") if c not in columns]
    if not states:
        missing.insert(0, "state_*")
    nexts = [f"next_{c}" for c in states]
    missing += [c for c in nexts if c not in columns]
    if missing:
        raise Invalid(
            "the transitions table lacks the column(s) "
            + ", ".join(missing)
            + "; it needs state_*, action, reward, next_state_* (one per state_*) and done",
            code=CODE,
            missing=missing,
        )
    return states, nexts


def check_schema(schema: Sequence[Mapping[str, Any]]) -> list[str]:
    """Submit-time check from an upload's column statistics; returns the state columns."""
    columns = [str(c.get("name")) for c in schema]
    states, nexts = state_columns(columns)
    nulls = {str(c.get("name")): int(c.get("nulls") or 0) for c in schema}
    bad = [c for c in [*states, *nexts, "action", "reward", "done"] if nulls.get(c, 0) > 0]
    if bad:
        raise Invalid(
            f"the transitions table has missing or NaN values in {', '.join(bad)}",
            code=CODE,
            columns=bad,
        )
    return states


@dataclass(frozen=True)
class Transitions:
    state_names: list[str]
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    dones: np.ndarray

    @property
    def n_actions(self) -> int:
        return int(self.actions.max()) + 1

    def episode_starts(self) -> np.ndarray:
        starts = np.zeros(len(self.dones), dtype=bool)
        starts[0] = True
        starts[1:] = self.dones[:-1] > 0.5
        return starts

    def episode_returns(self, gamma: float = 1.0) -> np.ndarray:
        """Returns of the logged episodes (the behaviour policy's value, by Monte Carlo)."""
        out, total, discount = [], 0.0, 1.0
        for r, d in zip(self.rewards, self.dones, strict=True):
            total += discount * float(r)
            discount *= gamma
            if d > 0.5:
                out.append(total)
                total, discount = 0.0, 1.0
        return np.asarray(out)


def _numeric(frame: Any, names: list[str], what: str) -> np.ndarray:
    try:
        values = frame[names].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise Invalid(f"the {what} columns must be numeric", code=CODE) from None
    if not np.isfinite(values).all():
        raise Invalid(f"the {what} columns hold missing, NaN or infinite values", code=CODE)
    result: np.ndarray = values
    return result


def load(frame: Any) -> Transitions:
    """Validate the values of a transitions DataFrame and return them as arrays."""
    states, nexts = state_columns([str(c) for c in frame.columns])
    if len(frame) < 2:
        raise Invalid("the transitions table needs at least 2 rows", code=CODE)
    obs, next_obs = _numeric(frame, states, "state"), _numeric(frame, nexts, "next_state")
    rewards = _numeric(frame, ["reward"], "reward")[:, 0]
    actions = _numeric(frame, ["action"], "action")[:, 0]
    dones = _numeric(frame, ["done"], "done")[:, 0]
    if (actions < 0).any() or (actions != np.round(actions)).any() or actions.max() >= MAX_ACTIONS:
        raise Invalid(f"actions must be integer codes 0..{MAX_ACTIONS - 1}", code=CODE)
    if not np.isin(dones, (0.0, 1.0)).all():
        raise Invalid("done must be 0 or 1 (true/false)", code=CODE)
    return Transitions(states, obs, actions.astype(np.int64), rewards, next_obs, dones)
