"""The DP settings, in one module: DP-FedAvg for federations, DP-SGD for training jobs.

``FederationDP`` is the ``privacy.dp`` block a coordinator writes; ``DPConfig`` is the same type
resolved for one federation (``expected_clients`` defaulted to the quorum, ``min_clients`` added),
which is what the accountant, the budget and the privatize functions read. ``DPParams`` is the ``dp``
block of a torch model type's params (per-example gradient clipping in ``bastion.ml.dp_sgd``); it
shares the accountant with federations but describes a different mechanism (the sampling rate comes
from the batch size, and sigma may be chosen from a target epsilon), so its fields are its own.
The class names are the OpenAPI schema names: keep them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.privacy.accountant import PldAccountant, RdpAccountant
from bastion.privacy.budget import BudgetGuard, PrivacyBudget
from bastion.privacy.noise import central_noise_std, distributed_noise_std

MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER = 0.1, 100.0
DEFAULT_NOISE_MULTIPLIER = 1.1


class FederationDP(BaseModel):
    """DP-FedAvg parameters (McMahan et al. 2018); ``expected_clients`` defaults to the quorum."""

    model_config = ConfigDict(extra="forbid")

    clip_norm: float = Field(gt=0, allow_inf_nan=False, description="S: L2 bound of one site's delta")
    noise_multiplier: float = Field(gt=0, le=1000, allow_inf_nan=False, description="sigma, in units of S")
    mode: Literal["central", "distributed"] = "distributed"
    sampling_rate: float = Field(1.0, gt=0, le=1, description="q: chance each site is asked in a round")
    expected_clients: int | None = Field(None, ge=1, description="fixed denominator of the mean")
    delta: float = Field(1e-5, gt=0, lt=1)
    budget_epsilon: float | None = Field(None, gt=0, allow_inf_nan=False)
    accountant: Literal["rdp", "pld"] = "rdp"

    def resolve(self, *, quorum: int, min_clients: int) -> DPConfig:
        """These settings for a federation of ``quorum`` sites per round, at least ``min_clients``."""
        expected = self.expected_clients or quorum
        return DPConfig(
            **self.model_dump(exclude={"expected_clients"}),
            expected_clients=expected,
            min_clients=min(min_clients, expected),
        )


class DPConfig(FederationDP):
    """A federation's resolved DP settings; see docs/privacy.md for how to choose them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expected_clients: int = Field(ge=1, description="q * population: the fixed denominator of the mean")
    min_clients: int = Field(
        default=1, ge=1, description="distributed mode: fewest sites whose noise must add up to sigma * S"
    )

    @model_validator(mode="after")
    def _check(self) -> DPConfig:
        if self.mode == "distributed" and self.min_clients > self.expected_clients:
            raise ValueError("min_clients cannot exceed expected_clients")
        return self

    def site_noise_std(self) -> float:
        """Std each site adds to its clipped delta (0 in central mode)."""
        if self.mode == "central":
            return 0.0
        return distributed_noise_std(self.noise_multiplier, self.clip_norm, self.min_clients)

    def server_noise_std(self) -> float:
        """Std the server adds to the sum of deltas (0 in distributed mode)."""
        if self.mode != "central":
            return 0.0
        return central_noise_std(self.noise_multiplier, self.clip_norm)

    def guard(self) -> BudgetGuard:
        """A fresh accountant with this federation's budget."""
        acc = (RdpAccountant if self.accountant == "rdp" else PldAccountant)(
            self.noise_multiplier, self.sampling_rate
        )
        budget = PrivacyBudget(epsilon=self.budget_epsilon, delta=self.delta) if self.budget_epsilon else None
        return BudgetGuard(acc, budget, None if budget else self.delta)

    def guard_after(self, rounds: int) -> BudgetGuard:
        """The accountant after ``rounds`` noisy rounds have been released."""
        guard = self.guard()
        guard.accountant.step(rounds)
        return guard


class DPParams(BaseModel):
    """The ``dp`` block of a torch model type's params: DP-SGD through Opacus when ``enabled``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Train with DP-SGD (per-sample clipping, Gaussian noise)")
    noise_multiplier: float | None = Field(
        None,
        ge=MIN_NOISE_MULTIPLIER,
        le=MAX_NOISE_MULTIPLIER,
        description=(
            "sigma: noise std over the clipping norm; more noise, smaller epsilon. "
            f"Default {DEFAULT_NOISE_MULTIPLIER} unless target_epsilon is given (null means unset)"
        ),
    )
    max_grad_norm: float = Field(
        1.0, gt=0.0, le=100.0, description="C: each row's gradient is clipped to this L2 norm"
    )
    delta: float | None = Field(
        None,
        gt=0.0,
        le=1e-3,
        description=(
            "delta of the (epsilon, delta) guarantee; must be below 1/n_train. Default: "
            "min(1e-5, the largest power of ten below 1/n_train)"
        ),
    )
    target_epsilon: float | None = Field(
        None,
        gt=0.0,
        le=100.0,
        description="If set, sigma is chosen so that epsilon after all epochs is at most this",
    )
    secure_rng: bool = Field(
        False, description="Noise and sampling from the OS CSPRNG (slower) instead of a seeded torch PRNG"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_sigma(cls, data: Any) -> Any:
        """sigma defaults only when no target epsilon picks it: a stored (dumped) dp block with
        ``target_epsilon`` and ``noise_multiplier: null`` validates again to the same thing."""
        if not isinstance(data, dict):
            return data
        if data and "enabled" not in data:
            raise ValueError("dp settings were given without 'enabled': set enabled to true to train with DP")
        if data.get("target_epsilon") is None and data.get("noise_multiplier") is None:
            data = {**data, "noise_multiplier": DEFAULT_NOISE_MULTIPLIER}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DPParams:
        if self.target_epsilon is not None and self.noise_multiplier is not None:
            raise ValueError("give noise_multiplier or target_epsilon, not both")
        return self
