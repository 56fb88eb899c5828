"""Resource profiles, the admin price table, and cost estimates from the model's compute estimate."""

from __future__ import annotations

import pytest

from bastion.context import Context
from bastion.errors import Invalid
from bastion.jobs.pricing import DEFAULT_PRICES, FIXED_OVERHEAD_SECONDS, Price, PriceTable, estimate
from bastion.ml import model_types

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_defaults_until_an_admin_replaces_them(ctx: Context) -> None:
    table = PriceTable(ctx.db)
    assert table.all() == DEFAULT_PRICES
    assert table.get(None).profile == "cpu-small"
    table.replace(
        {"tiny": {"hourly_cost": 1.0}, "huge": {"hourly_cost": 10.0, "speedup": 4}}, updated_by=None
    )
    assert set(table.all()) == {"tiny", "huge"}
    assert table.get(None).profile in ("huge", "tiny"), "default falls back to a listed profile"
    with pytest.raises(Invalid) as err:
        table.get("cpu-small")
    assert err.value.details["choices"] == ["huge", "tiny"]


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"Bad Name": {"hourly_cost": 1}},
        {"x": {"hourly_cost": -1}},
        {"x": {"hourly_cost": 1, "speedup": 0}},
    ],
)
def test_bad_tables_are_refused(ctx: Context, bad: dict[str, dict[str, float]]) -> None:
    with pytest.raises(Invalid):
        PriceTable(ctx.db).replace(bad, updated_by=None)
    assert PriceTable(ctx.db).all() == DEFAULT_PRICES


def test_estimate_is_compute_over_speedup_times_price(ctx: Context) -> None:
    params = {"estimator": "random_forest", "n_estimators": 100}
    compute = model_types.estimate_seconds("alzheimer_classifier", 400, 9, params)
    for price in (Price("a", 3.6, speedup=1.0), Price("b", 7.2, speedup=4.0)):
        out = estimate(price, "alzheimer_classifier", 400, 9, params)
        seconds = FIXED_OVERHEAD_SECONDS + compute / price.speedup
        assert out["estimated_seconds"] == pytest.approx(seconds, rel=1e-3)
        assert out["total_estimated_cost"] == pytest.approx(seconds / 3600 * price.hourly_cost, rel=1e-3)
        assert out["currency"] == "USD" and out["hourly_cost"] == price.hourly_cost
