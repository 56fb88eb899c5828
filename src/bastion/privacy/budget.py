"""A federation's privacy budget: report (epsilon, delta) after each round and stop before exceeding it.

The check happens *before* a round starts: a round whose completion would push epsilon past the budget
never runs, so the published models never exceed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import Conflict, Invalid
from bastion.privacy.accountant import Accountant


class PrivacyBudget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float = Field(gt=0, allow_inf_nan=False)
    delta: float = Field(gt=0, lt=1)


@dataclass(frozen=True)
class PrivacyReport:
    """Privacy spent so far; what the coordinator shows after every round."""

    rounds: int
    epsilon: float
    delta: float
    budget_epsilon: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "rounds": self.rounds,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "budget_epsilon": self.budget_epsilon,
        }


class BudgetExhausted(Conflict):
    """The next round would spend more privacy than the federation allows."""

    code = "privacy_budget_exhausted"


class BudgetGuard:
    """Wraps an accountant with an optional budget; ``delta`` is the budget's, or the one given."""

    def __init__(
        self, accountant: Accountant, budget: PrivacyBudget | None = None, delta: float | None = None
    ) -> None:
        if budget is not None and delta is not None and delta != budget.delta:
            raise Invalid("delta differs from the budget's delta")
        resolved = budget.delta if budget is not None else delta
        if resolved is None:
            raise Invalid("give a budget or a delta to report epsilon at")
        self.accountant = accountant
        self.budget = budget
        self.delta: float = resolved

    def can_run_round(self) -> bool:
        if self.budget is None:
            return True
        return not self.accountant.would_exceed(self.budget.epsilon, self.delta)

    def check_next_round(self) -> None:
        """Raise BudgetExhausted if one more round would exceed the budget."""
        if not self.can_run_round():
            assert self.budget is not None
            nxt = self.accountant.epsilon_after(self.accountant.rounds + 1, self.delta)
            raise BudgetExhausted(
                f"privacy budget reached: round {self.accountant.rounds + 1} would bring epsilon to "
                f"{nxt:.3f}, above the budget of {self.budget.epsilon:g} at delta={self.delta:g}",
                rounds=self.accountant.rounds,
                epsilon=self.accountant.epsilon(self.delta),
            )

    def record_round(self) -> PrivacyReport:
        """Count one finished round and report the privacy spent."""
        self.accountant.step()
        return self.report()

    def report(self) -> PrivacyReport:
        return PrivacyReport(
            rounds=self.accountant.rounds,
            epsilon=self.accountant.epsilon(self.delta),
            delta=self.delta,
            budget_epsilon=self.budget.epsilon if self.budget else None,
        )

    def rounds_left(self, limit: int = 100_000) -> int:
        """How many more rounds fit in the budget (epsilon grows with rounds: binary search)."""
        if self.budget is None:
            return limit
        lo, hi = 0, limit
        start = self.accountant.rounds
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.accountant.epsilon_after(start + mid, self.delta) <= self.budget.epsilon:
                lo = mid
            else:
                hi = mid - 1
        return lo
