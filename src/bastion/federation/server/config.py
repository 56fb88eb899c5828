"""A federation's config: what a coordinator asks for at creation, validated once and stored as JSON.

:class:`FederationConfig` is that stored document and the source of truth after a restart: the
strategy is rebuilt from ``strategy`` and ``strategy_options``, and the parts sites need (model,
training, evaluation) travel to them inside the server-signed global model.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from bastion.errors import Invalid
from bastion.federation.features import FeatureDeclaration
from bastion.federation.server.privacy import PrivacySettings, check_budget, value_range
from bastion.federation.strategies import STRATEGIES, available_strategies, create_strategy
from bastion.ml.fl_config import model_config_schema
from bastion.privacy import DPConfig

MAX_ROUND_TIMEOUT_S = 7 * 24 * 3600.0


class TrainingConfig(BaseModel):
    """Local training each site runs per round (the default site trainer honours all of it)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1, le=1000)
    lr: float = Field(0.05, gt=0, le=10, allow_inf_nan=False)
    batch_size: int = Field(32, ge=1, le=65536)
    momentum: float = Field(0.0, ge=0, lt=1)


class EvaluationConfig(BaseModel):
    """Site-side validation split, and an optional server-side test set the coordinator holds.

    ``server_dataset`` names a built-in source (``builtin:digits``); the server evaluates each new global
    model on its held-out ``holdout_fraction``, which the sites' ``builtin:`` loaders never train on.
    """

    model_config = ConfigDict(extra="forbid")

    local_validation_fraction: float = Field(0.1, ge=0, lt=0.9)
    server_dataset: str | None = Field(None, max_length=200)
    holdout_fraction: float = Field(0.2, gt=0, lt=0.9)
    split_seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("server_dataset")
    @classmethod
    def _builtin_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("builtin:"):
            raise ValueError("server_dataset must be a built-in source such as 'builtin:digits'")
        return value


class FederationConfig(BaseModel):
    # No docstring: pydantic would publish it as the request schema's description.
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    model: Annotated[dict[str, Any], WithJsonSchema(model_config_schema())] = Field(
        description="model spec, e.g. {'type': 'tabular_mlp', 'in_features': 64, ...}"
    )
    rounds: int = Field(10, ge=1, le=10_000)
    min_clients: int = Field(2, ge=1, le=10_000, description="fewest updates a round may be aggregated from")
    target_clients: int | None = Field(
        None, ge=1, le=10_000, description="close the round as soon as this many arrive (default min_clients)"
    )
    round_timeout_s: float = Field(600.0, gt=0, le=MAX_ROUND_TIMEOUT_S, allow_inf_nan=False)
    max_round_attempts: int = Field(3, ge=1, le=100, description="deadlines a short round may be given")
    strategy: str = Field("fedavg", max_length=32)
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of the initial weights")
    features: FeatureDeclaration | None = Field(
        None,
        description=(
            "site CSV columns: numeric (standardised with statistics pooled from the sites' "
            "aggregates), categorical (one-hot over declared levels) or drop; label and classes "
            "(docs/federated.md)"
        ),
    )
    max_site_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description=(
            "most of a round's weight one site may hold (1 = no share cap); each site's sample count "
            "is also bounded by what it registered (federation/server/weights.py)"
        ),
    )
    privacy: PrivacySettings | None = Field(
        None, description="secure aggregation and/or DP-FedAvg (docs/privacy.md)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FederationConfig:
        if self.target_clients is None:
            self.target_clients = self.min_clients
        if self.target_clients < self.min_clients:
            raise ValueError("target_clients cannot be smaller than min_clients")
        if self.features is not None:
            if self.model.get("type") != "tabular_mlp":
                raise ValueError("declared features need a tabular_mlp model")
            if self.model.get("in_features") != self.features.encoded_width:
                raise ValueError(
                    f"model.in_features must be {self.features.encoded_width}: the width of the declared "
                    "features once categorical columns are one-hot encoded"
                )
            if self.model.get("num_classes") != len(self.features.classes):
                raise ValueError("model.num_classes must equal the number of declared classes")
        secagg = self.privacy.secure_aggregation if self.privacy else None
        if secagg is not None and secagg.threshold is not None:
            if secagg.neighbours is not None and secagg.threshold > secagg.neighbours:
                raise ValueError("secure_aggregation.threshold cannot exceed neighbours")
            if secagg.threshold > self.target_clients:
                raise ValueError("secure_aggregation.threshold cannot exceed target_clients")
        return self

    @property
    def quorum(self) -> int:
        assert self.target_clients is not None
        return self.target_clients

    @property
    def secure(self) -> bool:
        return self.privacy is not None and self.privacy.secure_aggregation is not None

    def dp(self) -> DPConfig | None:
        """The federation's :class:`~bastion.privacy.DPConfig`, or None without DP."""
        if self.privacy is None:
            return None
        return self.privacy.dp_config(quorum=self.quorum, min_clients=self.min_clients)


# The body of POST /api/v1/federations is exactly the stored config; the subclass only keeps the
# request schema's name (``FederationCreate``) in the OpenAPI document.
class FederationCreate(FederationConfig):
    pass


def check_strategy(cfg: FederationConfig) -> None:
    """Build the strategy once so a bad name or option fails at creation, not at the first round."""
    if cfg.strategy not in available_strategies():
        raise Invalid(
            f"unknown aggregation strategy {cfg.strategy!r}; choose one of {', '.join(available_strategies())}",
            code="unknown_strategy",
        )
    strategy = create_strategy(cfg.strategy, cfg.strategy_options)
    check_privacy(cfg)
    byzantine = getattr(strategy.options, "num_byzantine", None)
    if isinstance(byzantine, int) and cfg.min_clients < 2 * byzantine + 3:
        raise Invalid(
            f"{cfg.strategy} with num_byzantine={byzantine} needs min_clients >= {2 * byzantine + 3}",
            code="invalid_strategy_options",
        )


def check_privacy(cfg: FederationConfig) -> None:
    """Secure aggregation and DP-FedAvg hide individual updates: only streaming strategies can work."""
    if cfg.privacy is None or not cfg.privacy.enabled:
        return
    if STRATEGIES[cfg.strategy].needs_all_updates:
        streaming = ", ".join(n for n in available_strategies() if not STRATEGIES[n].needs_all_updates)
        raise Invalid(
            f"{cfg.strategy} needs every individual update, which secure aggregation and DP-FedAvg do not "
            f"give the server; choose one of {streaming}",
            code="invalid_privacy_settings",
        )
    if cfg.secure and cfg.min_clients < 3:
        raise Invalid(
            "secure aggregation needs min_clients >= 3: with two sites each could subtract its own update "
            "from the published average and read the other's",
            code="invalid_privacy_settings",
        )
    check_budget(cfg.dp())


def privacy_site_config(cfg: FederationConfig) -> dict[str, Any]:
    """What a site must do to its delta before it leaves (clip, noise, mask)."""
    dp = cfg.dp()
    out: dict[str, Any] = {"secure_aggregation": cfg.secure}
    if dp is not None:
        out["dp"] = {"clip_norm": dp.clip_norm, "site_noise_std": dp.site_noise_std(), "mode": dp.mode}
    if cfg.privacy is not None and cfg.secure:
        out["value_range"] = value_range(cfg.privacy, dp)
    return out


def site_config(cfg: FederationConfig, client_config: dict[str, Any], sealing_key: str) -> dict[str, Any]:
    """The JSON config signed into every global model: everything a site needs for one round."""
    return {
        "privacy": privacy_site_config(cfg),
        "model": cfg.model,
        "training": cfg.training.model_dump(),
        "strategy": {"name": cfg.strategy, **client_config},
        "evaluation": {
            "local_validation_fraction": cfg.evaluation.local_validation_fraction,
            "holdout_fraction": cfg.evaluation.holdout_fraction,
            "split_seed": cfg.evaluation.split_seed,
        },
        "rounds": cfg.rounds,
        "server_sealing_key": sealing_key,
        **({"features": cfg.features.model_dump()} if cfg.features is not None else {}),
    }
