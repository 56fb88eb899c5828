"""DP-FedAvg (McMahan et al. 2018) around secure aggregation: what a site and the server each do.

Site: clip the update to L2 norm S; in *distributed* mode also add its share of the noise before
masking, so the server only ever sees noisy data. Server: in *central* mode add N(0, (sigma S)^2) to the
unmasked sum (the sites trust the server with the noiseless sum); then divide by the *expected* number
of sites (fixed denominator), so one site's presence changes the average by at most S / expected.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.federation.dp.accountant import PldAccountant, RdpAccountant
from bastion.federation.dp.budget import BudgetGuard, PrivacyBudget
from bastion.federation.dp.clip import clip_l2
from bastion.federation.dp.noise import central_noise_std, distributed_noise_std, secure_gaussian


class DPConfig(BaseModel):
    """DP settings of a federation; see docs/privacy.md for how to choose them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clip_norm: float = Field(gt=0, allow_inf_nan=False, description="S: L2 bound of one site's update")
    noise_multiplier: float = Field(gt=0, allow_inf_nan=False, description="sigma: noise std in units of S")
    mode: Literal["central", "distributed"] = "distributed"
    sampling_rate: float = Field(default=1.0, gt=0, le=1, description="q: chance a site joins a round")
    expected_clients: int = Field(ge=1, description="q * population: the fixed denominator of the mean")
    min_clients: int = Field(
        default=1, ge=1, description="distributed mode: fewest sites whose noise must add up to sigma * S"
    )
    delta: float = Field(default=1e-5, gt=0, lt=1)
    budget_epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    accountant: Literal["rdp", "pld"] = "rdp"

    @model_validator(mode="after")
    def _check(self) -> DPConfig:
        if self.mode == "distributed" and self.min_clients > self.expected_clients:
            raise ValueError("min_clients cannot exceed expected_clients")
        return self

    def site_noise_std(self) -> float:
        """Std each site adds (0 in central mode)."""
        if self.mode == "central":
            return 0.0
        return distributed_noise_std(self.noise_multiplier, self.clip_norm, self.min_clients)

    def guard(self) -> BudgetGuard:
        """A fresh accountant with this federation's budget."""
        acc = (RdpAccountant if self.accountant == "rdp" else PldAccountant)(
            self.noise_multiplier, self.sampling_rate
        )
        budget = PrivacyBudget(epsilon=self.budget_epsilon, delta=self.delta) if self.budget_epsilon else None
        return BudgetGuard(acc, budget, None if budget else self.delta)


def privatize_update(update: np.ndarray, cfg: DPConfig) -> np.ndarray:
    """Site side: clip to S, then (distributed mode) add this site's share of the noise."""
    clipped = clip_l2(np.asarray(update, dtype=np.float64).ravel(), cfg.clip_norm)
    std = cfg.site_noise_std()
    return clipped + secure_gaussian(clipped.shape, std) if std > 0 else clipped


def privatize_sum(total: np.ndarray, cfg: DPConfig) -> np.ndarray:
    """Server side, on the unmasked sum: add central noise when the mode is central."""
    vec = np.asarray(total, dtype=np.float64)
    if cfg.mode != "central":
        return vec
    return vec + secure_gaussian(vec.shape, central_noise_std(cfg.noise_multiplier, cfg.clip_norm))


def dp_mean(total: np.ndarray, cfg: DPConfig) -> np.ndarray:
    """The DP-FedAvg average: noisy sum over the expected (not the actual) number of sites."""
    return np.asarray(total, dtype=np.float64) / cfg.expected_clients
