"""Server-side aggregation strategies, one per module, looked up by name.

Streaming (O(model) memory): ``fedavg``, ``fedprox``, ``fedadam``, ``fedyogi``.
Whole-round (O(clients x model)): ``median``, ``trimmed_mean``, ``krum``, ``multikrum``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.errors import Invalid
from bastion.federation.strategies.base import Params, Strategy, StrategyOptions, StrategyState
from bastion.federation.strategies.fedadam import FedAdam
from bastion.federation.strategies.fedavg import FedAvg
from bastion.federation.strategies.fedprox import FedProx
from bastion.federation.strategies.fedyogi import FedYogi
from bastion.federation.strategies.krum import Krum, MultiKrum
from bastion.federation.strategies.median import Median
from bastion.federation.strategies.trimmed_mean import TrimmedMean

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (FedAvg, FedProx, FedAdam, FedYogi, Median, TrimmedMean, Krum, MultiKrum)
}

__all__ = [
    "STRATEGIES",
    "FedAdam",
    "FedAvg",
    "FedProx",
    "FedYogi",
    "Krum",
    "Median",
    "MultiKrum",
    "Params",
    "Strategy",
    "StrategyOptions",
    "StrategyState",
    "TrimmedMean",
    "available_strategies",
    "create_strategy",
]


def available_strategies() -> list[str]:
    return sorted(STRATEGIES)


def create_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """Build a strategy by name; unknown names and unknown or invalid options raise :class:`Invalid`."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise Invalid(
            f"unknown aggregation strategy {name!r}; choose one of {', '.join(available_strategies())}",
            code="unknown_strategy",
        )
    return cls(options)
