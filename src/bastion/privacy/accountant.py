"""Privacy accounting for DP-FedAvg: (epsilon, delta) after each round.

One round is one Poisson-subsampled Gaussian mechanism: each site takes part with probability q (the
client sampling rate) and the sum of clipped updates gets Gaussian noise with std sigma * S. The figures
come from Google's dp-accounting library, RDP (tight enough, cheap) or PLD (tighter, slower); both
compose ``rounds`` identical events and convert to (epsilon, delta).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

from bastion.errors import Invalid


@runtime_checkable
class Accountant(Protocol):
    """What a federation needs from an accountant; ``rounds`` counts the rounds already run."""

    rounds: int

    def step(self, rounds: int = 1) -> None: ...

    def epsilon(self, delta: float) -> float: ...

    def epsilon_after(self, rounds: int, delta: float) -> float: ...

    def would_exceed(self, budget_epsilon: float, delta: float, rounds: int = 1) -> bool: ...


class _SampledGaussianAccountant:
    """Shared bookkeeping: the mechanism's parameters and the round counter."""

    def __init__(self, noise_multiplier: float, sampling_rate: float) -> None:
        if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
            raise Invalid("noise multiplier must be positive for a finite epsilon")
        if not 0 < sampling_rate <= 1:
            raise Invalid("sampling rate must be in (0, 1]")
        self.noise_multiplier = noise_multiplier
        self.sampling_rate = sampling_rate
        self.rounds = 0

    def event(self) -> Any:
        import dp_accounting

        return dp_accounting.PoissonSampledDpEvent(
            self.sampling_rate, dp_accounting.GaussianDpEvent(self.noise_multiplier)
        )

    def step(self, rounds: int = 1) -> None:
        if rounds < 0:
            raise Invalid("rounds must be non-negative")
        self.rounds += rounds

    def epsilon(self, delta: float) -> float:
        return self.epsilon_after(self.rounds, delta)

    def epsilon_after(self, rounds: int, delta: float) -> float:
        if not 0 < delta < 1:
            raise Invalid("delta must be in (0, 1)")
        if rounds == 0:
            return 0.0
        return float(self._compute(rounds, delta))

    def would_exceed(self, budget_epsilon: float, delta: float, rounds: int = 1) -> bool:
        """Whether running ``rounds`` more rounds would take epsilon past the budget."""
        return self.epsilon_after(self.rounds + rounds, delta) > budget_epsilon

    def _compute(self, rounds: int, delta: float) -> float:
        raise NotImplementedError


class RdpAccountant(_SampledGaussianAccountant):
    """Renyi-DP accounting with dp_accounting's RdpAccountant, over its default orders unless given.

    RDP composes by addition, so the RDP curve of one round is computed once per (q, sigma, orders)
    (the costly part) and multiplied by the number of rounds, exactly as
    ``RdpAccountant.compose(event, rounds)`` does.
    """

    def __init__(
        self, noise_multiplier: float, sampling_rate: float, orders: Sequence[float] | None = None
    ) -> None:
        super().__init__(noise_multiplier, sampling_rate)
        self.orders = tuple(orders) if orders is not None else None

    def _compute(self, rounds: int, delta: float) -> float:
        from dp_accounting.rdp import rdp_privacy_accountant as impl

        curve = _one_round_rdp(self.sampling_rate, self.noise_multiplier, self.orders)
        if curve is None:  # a dp_accounting without the attribute we read: compose in full
            acc = impl.RdpAccountant(self.orders)
            acc.compose(self.event(), rounds)
            return float(acc.get_epsilon(delta))
        orders, rdp = curve
        return float(impl.compute_epsilon(orders, rounds * rdp, delta)[0])


@lru_cache(maxsize=64)
def _one_round_rdp(q: float, sigma: float, orders: tuple[float, ...] | None) -> tuple[Any, Any] | None:
    """(orders, RDP of one Poisson-sampled Gaussian round) as dp_accounting computes it."""
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant as impl

    acc = impl.RdpAccountant(orders)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), 1)
    rdp = getattr(acc, "_rdp", None)
    orders_arr = getattr(acc, "_orders", None)
    if rdp is None or orders_arr is None:
        return None
    rdp.setflags(write=False)
    return orders_arr, rdp


class PldAccountant(_SampledGaussianAccountant):
    """Privacy-loss-distribution accounting, as dp_accounting's PLDAccountant: tighter than RDP.

    The PLD of one round is built once; ``rounds`` rounds are its self-composition.
    """

    def __init__(
        self, noise_multiplier: float, sampling_rate: float, value_discretization_interval: float = 1e-4
    ) -> None:
        super().__init__(noise_multiplier, sampling_rate)
        self.value_discretization_interval = value_discretization_interval
        self._one_round: Any = None

    def _compute(self, rounds: int, delta: float) -> float:
        from dp_accounting.pld import privacy_loss_distribution as pld

        vdi = self.value_discretization_interval
        if self._one_round is None:
            self._one_round = pld.from_gaussian_mechanism(
                standard_deviation=self.noise_multiplier,
                value_discretization_interval=vdi,
                sampling_prob=self.sampling_rate,
            )
        composed = pld.identity(value_discretization_interval=vdi).compose(
            self._one_round.self_compose(rounds)
        )
        return float(composed.get_epsilon_for_delta(delta))
