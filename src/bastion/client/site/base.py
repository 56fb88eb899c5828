"""What the site runtime and its two participants share, so neither participant imports the other.

:class:`Site` is the runtime as a participant sees it (the federation, the local state and trainer,
and the site endpoints through the one transport); :class:`Participant` is what the runtime asks of
the plain (:mod:`.plain`) and the secure-aggregation (:mod:`.secure`) participant. The runtime
(:mod:`.runtime`) builds both and picks one per round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import httpx

    from bastion.client.site.state import SiteState

# What a participant's non-blocking step asks the runtime to wait for next.
PROGRESS, WAIT_STAGE, WAIT_ROUND = "progress", "wait_stage", "wait_round"


@dataclass
class FitResult:
    params: Mapping[str, np.ndarray]
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)


class SiteTrainer(ABC):
    """Hooks a site implements: ``fit`` trains from the global parameters; ``evaluate`` validates locally.

    ``config`` is the server-signed round config: ``model``, ``training``, ``strategy`` (e.g.
    ``proximal_mu``), ``evaluation`` and ``round``. Metrics returned by ``evaluate`` should be named
    ``val_*`` and may include ``val_num_samples``; the server weights them into the round's metrics.
    """

    def prepare(self, config: Mapping[str, Any]) -> None:
        """Called once before the site registers: load data, import frameworks, build the model."""
        return None

    def train_samples(self) -> int | None:
        """Training rows at this site, registered once as the most its updates may weigh."""
        return None

    @abstractmethod
    def fit(self, params: dict[str, np.ndarray], config: Mapping[str, Any]) -> FitResult: ...

    def evaluate(self, params: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, float]:
        return {}


class SiteError(Exception):
    """The site cannot go on (federation failed, credential refused, server key changed, ...)."""

    def __init__(self, message: str, code: str = "site_error") -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class SiteEvent:
    kind: str  # joined, waiting, training, sent, late, retry, secagg, secagg_aborted, completed
    round: int | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class Site(Protocol):
    """The runtime, as the participants use it."""

    federation_id: str
    trainer: SiteTrainer
    state: SiteState
    key: Any  # the site's Ed25519 private key
    peer_keys: dict[str, str] | None
    poll_timeout: float

    def emit(self, kind: str, round: int | None, message: str, **data: Any) -> None: ...

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to this federation's site endpoints (``/api/v1/federations/{id}/site`` + path)."""
        ...

    def info(self, wait_round: int | None = None, *, secagg: bool = False) -> dict[str, Any]: ...

    def global_model(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]: ...


class Participant(Protocol):
    """One way of taking part in a round: sealed updates, or secure aggregation."""

    def step(self, info: Mapping[str, Any]) -> str:
        """One non-blocking move in the current round; returns what to wait for next."""
        ...

    def advance(self, info: dict[str, Any]) -> dict[str, Any]:
        """Act on the round, then wait (long-poll) for what it waits on; returns fresh ``/info``."""
        ...
