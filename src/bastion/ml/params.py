"""Parameters shared by every model type: how much data is held out and how importance is measured."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CommonParams(BaseModel):
    """Base of every model type's parameters; unknown fields are refused, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test_size: float = Field(
        0.2, ge=0.1, le=0.5, description="Fraction of rows held out (stratified) to measure the metrics"
    )
    importance_repeats: int = Field(
        5, ge=0, le=20, description="Shuffles per feature for permutation importance (0 skips it)"
    )
    cv: int | None = Field(
        None, ge=2, le=20, description="Also cross-validate with this many folds on the training rows"
    )
