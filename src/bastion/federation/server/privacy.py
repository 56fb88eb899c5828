"""A federation's privacy settings: secure aggregation and DP-FedAvg, validated once at creation.

``privacy.secure_aggregation`` makes every round a SecAgg+ session (the server learns only the sum of
the sites' deltas); ``privacy.dp`` clips each site's delta to ``clip_norm`` and adds Gaussian noise,
centrally (the server, to the sum) or distributed (each site, before masking: needs secure
aggregation). The accountant's (epsilon, delta) goes into every round's metrics and the status, and a
``budget_epsilon`` stops the federation before a round would exceed it. See docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.errors import Invalid
from bastion.federation.secagg import SecAggConfig
from bastion.privacy import DPConfig, FederationDP

if TYPE_CHECKING:
    from bastion.federation.server.config import FederationConfig

STAGE_TIMEOUT_DEFAULT_S = 60.0


class SecureAggregationSettings(BaseModel):
    """SecAgg+ parameters; see docs/privacy.md for how k, t and the value range trade off."""

    model_config = ConfigDict(extra="forbid")

    neighbours: int | None = Field(
        None, ge=3, le=10_000, description="k: neighbourhood size (odd); omit for classic SecAgg (k = n)"
    )
    threshold: int | None = Field(
        None, ge=2, le=10_000, description="t: shares needed to unmask; default the smallest majority of k"
    )
    value_range: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="each delta coordinate is clipped to [-r, r] before quantization (default: from dp, else 1)",
    )
    quant_bits: int = Field(24, ge=8, le=48, description="fixed-point resolution of one coordinate")
    stage_timeout_s: float = Field(
        STAGE_TIMEOUT_DEFAULT_S, gt=0, le=3600, allow_inf_nan=False, description="time for each key stage"
    )


class PrivacySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secure_aggregation: SecureAggregationSettings | None = None
    dp: FederationDP | None = None

    @model_validator(mode="after")
    def _check(self) -> PrivacySettings:
        if self.dp is not None and self.dp.mode == "distributed" and self.secure_aggregation is None:
            raise ValueError(
                "distributed DP noise needs secure aggregation (each site's share alone is too little "
                "noise for the server to see); add privacy.secure_aggregation or use dp.mode 'central'"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.secure_aggregation is not None or self.dp is not None

    def dp_config(self, *, quorum: int, min_clients: int) -> DPConfig | None:
        """The resolved DP settings for a federation (None without DP)."""
        return self.dp.resolve(quorum=quorum, min_clients=min_clients) if self.dp is not None else None


def privacy_report(dp: DPConfig | None, rounds: int, max_rounds: int) -> dict[str, Any] | None:
    """(epsilon, delta) spent after ``rounds`` released rounds and how many more the budget allows."""
    if dp is None:
        return None
    guard = dp.guard_after(rounds)
    report: dict[str, Any] = dict(guard.report().as_dict())
    left = max(0, max_rounds - rounds)
    report.update(
        mode=dp.mode,
        noise_multiplier=dp.noise_multiplier,
        clip_norm=dp.clip_norm,
        sampling_rate=dp.sampling_rate,
        accountant=dp.accountant,
        rounds_left_in_budget=guard.rounds_left(limit=left) if dp.budget_epsilon else left,
    )
    return report


def round_privacy(cfg: FederationConfig, released: int) -> tuple[dict[str, float], str | None]:
    """Metrics of a round that releases the ``released``-th noisy model, and whether to stop after it."""
    dp = cfg.dp()
    if dp is None:
        return {}, None
    guard = dp.guard_after(released)
    metrics = {"dp_epsilon": guard.accountant.epsilon(dp.delta), "dp_delta": dp.delta}
    stop = None
    if released < cfg.rounds and not guard.can_run_round():
        stop = "privacy_budget_exhausted"
    return metrics, stop


def check_budget(dp: DPConfig | None) -> None:
    """Refuse a federation whose budget does not allow even one round."""
    if dp is None or dp.budget_epsilon is None:
        return
    first = dp.guard().accountant.epsilon_after(1, dp.delta)
    if first > dp.budget_epsilon:
        raise Invalid(
            f"one round already costs epsilon {first:.3f} at delta={dp.delta:g}, above the budget of "
            f"{dp.budget_epsilon:g}; raise noise_multiplier or the budget",
            code="privacy_budget_too_small",
        )


def value_range(privacy: PrivacySettings, dp: DPConfig | None) -> float:
    """Per-coordinate clip of the quantizer: given, or wide enough for a clipped delta plus its noise."""
    sa = privacy.secure_aggregation
    if sa is not None and sa.value_range is not None:
        return sa.value_range
    if dp is None:
        return 1.0
    return dp.clip_norm + 6.0 * dp.site_noise_std()


def secagg_config(
    privacy: PrivacySettings, dp: DPConfig | None, *, round_id: str, participants: list[int], length: int
) -> SecAggConfig:
    sa = privacy.secure_aggregation
    assert sa is not None
    n = len(participants)
    k = n if sa.neighbours is None else min(sa.neighbours, n)
    if k < n and k % 2 == 0:
        k -= 1
    threshold = sa.threshold or SecAggConfig.default_threshold(k)
    return SecAggConfig(
        round_id=round_id,
        participants=tuple(sorted(participants)),
        threshold=min(threshold, k),
        neighbours=None if k >= n else k,
        vector_length=length,
        clip=value_range(privacy, dp),
        quant_bits=sa.quant_bits,
    )


def selected(
    secret: bytes, federation_id: str, round: int, attempt: int, participant_id: str, q: float
) -> bool:
    """Poisson client sampling: each site joins a round with probability q, unpredictably to the sites.

    Keyed by a server secret so a site cannot tell in advance; deterministic per (round, attempt) so a
    restart or another API worker draws the same set.
    """
    if q >= 1.0:
        return True
    msg = f"bastion-fl-sampling/{federation_id}/{round}/{attempt}/{participant_id}".encode()
    draw = int.from_bytes(hmac.new(secret, msg, hashlib.sha256).digest()[:8], "big") / 2**64
    return draw < q
