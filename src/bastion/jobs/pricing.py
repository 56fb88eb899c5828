"""Resource profiles, their prices, and the cost estimate a caller sees before submitting.

Like seeds/004's instance types: each profile has an hourly cost; the estimate is the model type's
own compute estimate (``bastion.ml.model_types.estimate_seconds``) divided by the profile's speed-up,
times the hourly cost. Admins replace the table through ``PUT /api/v1/admin/training/prices``;
until they do, the built-in defaults apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select

from bastion.errors import Conflict, Invalid
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.tables import TrainingPrice

DEFAULT_PROFILE = "cpu-small"
PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
# Seconds an estimate never goes below: process start-up, data loading and saving the model.
FIXED_OVERHEAD_SECONDS = 2.0


@dataclass(frozen=True)
class Price:
    profile: str
    hourly_cost: float
    currency: str = "USD"
    speedup: float = 1.0
    description: str = ""

    def public(self) -> dict[str, Any]:
        return asdict(self)


RESOURCE_PROFILE_NOTE = (
    "a resource profile sets the price of cost estimates and the compute factor of the time "
    "estimate only; jobs do not yet get different resources: every job runs in a worker process "
    "under the same limits (BASTION_JOB_MEMORY_LIMIT_MB, BASTION_JOB_MAX_RUNTIME_SECONDS)"
)

DEFAULT_PRICES: dict[str, Price] = {
    "cpu-small": Price("cpu-small", 0.096, "USD", 1.0, "2 vCPU, 8 GiB (like ml.m5.large)"),
    "cpu-large": Price("cpu-large", 0.384, "USD", 3.0, "8 vCPU, 32 GiB (like ml.m5.2xlarge)"),
    "gpu-small": Price("gpu-small", 1.21, "USD", 8.0, "1 GPU, 8 vCPU (like ml.g5.2xlarge)"),
}


class PriceTable:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> dict[str, Price]:
        with self.db.reader() as conn:
            rows = conn.execute(select(TrainingPrice.__table__).order_by(TrainingPrice.profile)).all()
        if not rows:
            return dict(DEFAULT_PRICES)
        return {
            r.profile: Price(r.profile, r.hourly_cost, r.currency, r.speedup, r.description) for r in rows
        }

    def get(self, profile: str | None) -> Price:
        table = self.all()
        name = profile or (DEFAULT_PROFILE if DEFAULT_PROFILE in table else next(iter(table)))
        if name not in table:
            raise Invalid(
                f"unknown resource profile {name!r}; valid choices: {', '.join(table)}",
                code="unknown_resource_profile",
                choices=list(table),
            )
        return table[name]

    def patch(
        self, changes: Mapping[str, Mapping[str, Any] | None], *, updated_by: str | None
    ) -> dict[str, Price]:
        """Merge (RFC 7396): listed profiles are set, ``None`` removes one, the others are kept."""
        table: dict[str, Mapping[str, Any]] = {name: p.public() for name, p in self.all().items()}
        for name, spec in changes.items():
            if spec is None:
                table.pop(name, None)
            else:
                table[name] = spec
        if not table:
            raise Conflict("the price table needs at least one resource profile", code="last_profile")
        return self.replace(table, updated_by=updated_by)

    def replace(self, prices: Mapping[str, Mapping[str, Any]], *, updated_by: str | None) -> dict[str, Price]:
        """Replace the whole table in one transaction; refuses empty tables and odd names."""
        if not prices:
            raise Invalid("the price table needs at least one resource profile")
        parsed: list[Price] = []
        for name, spec in prices.items():
            if not PROFILE_NAME.fullmatch(name):
                raise Invalid(
                    f"resource profile names are 1-32 lowercase letters, digits, '.', '_' or '-': {name[:40]!r}"
                )
            try:
                price = Price(
                    name,
                    float(spec["hourly_cost"]),
                    str(spec.get("currency") or "USD")[:8],
                    float(1.0 if spec.get("speedup") is None else spec["speedup"]),
                    str(spec.get("description") or "")[:200],
                )
            except (KeyError, TypeError, ValueError):
                raise Invalid(
                    f"profile {name!r} needs a numeric hourly_cost (and optional speedup)"
                ) from None
            if not (0 <= price.hourly_cost < 1e6) or not (0 < price.speedup <= 1e4):
                raise Invalid(f"profile {name!r}: hourly_cost must be 0-1e6 and speedup above 0")
            parsed.append(price)
        with self.db.session() as s:
            s.execute(delete(TrainingPrice))
            now = utcnow()
            for p in parsed:
                s.add(
                    TrainingPrice(
                        profile=p.profile,
                        hourly_cost=p.hourly_cost,
                        currency=p.currency,
                        speedup=p.speedup,
                        description=p.description,
                        updated_at=now,
                        updated_by=updated_by,
                    )
                )
        return {p.profile: p for p in parsed}


def estimate(
    price: Price, model_type: str, n_samples: int, n_features: int, params: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Time and cost of one job on ``price``'s profile, from the model type's compute estimate."""
    from bastion.ml import model_types

    compute = model_types.estimate_seconds(model_type, max(1, n_samples), max(1, n_features), params)
    seconds = FIXED_OVERHEAD_SECONDS + compute / max(price.speedup, 1e-6)
    hours = seconds / 3600.0
    return {
        "model_type": model_type,
        "resource_profile": price.profile,
        "n_samples": n_samples,
        "n_features": n_features,
        "estimated_seconds": round(seconds, 3),
        "estimated_hours": round(hours, 6),
        "hourly_cost": price.hourly_cost,
        "total_estimated_cost": round(hours * price.hourly_cost, 6),
        "currency": price.currency,
    }
