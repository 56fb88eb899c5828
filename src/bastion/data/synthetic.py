"""A seeded generator of OASIS-like longitudinal MRI features, in the Kaggle column layout.

Why not noise: each subject gets a latent disease severity drawn from its diagnostic group; cognition
(MMSE, CDR) and atrophy (nWBV) follow that severity, age and education shift it, and the groups overlap
(Converted subjects sit between the two others), so a model can learn the target but not trivially.
Marginals follow the published OASIS-2 figures: age 60-98, MMSE 4-30, CDR in {0, 0.5, 1, 2},
eTIV 1100-2010 cm3, nWBV 0.64-0.84, ASF = 1755 / eTIV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

GROUPS = ("Nondemented", "Demented", "Converted")
GROUP_PROBS = (0.51, 0.39, 0.10)
KAGGLE_COLUMNS = (
    "Subject ID",
    "MRI ID",
    "Group",
    "Visit",
    "MR Delay",
    "M/F",
    "Hand",
    "Age",
    "EDUC",
    "SES",
    "MMSE",
    "CDR",
    "eTIV",
    "nWBV",
    "ASF",
)
# Mean and spread of the latent severity per group; Converted overlaps both neighbours.
_SEVERITY = {"Nondemented": (0.0, 0.5), "Converted": (1.1, 0.55), "Demented": (2.5, 0.85)}


def oasis_like_columns(n_samples: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate ``n_samples`` subjects (one visit each) as named numpy columns.

    The same ``(n_samples, seed)`` always gives the same data, on every platform numpy supports.
    """
    if n_samples < 1:
        raise ValueError("n_samples must be positive")
    rng = np.random.default_rng(seed)
    n = n_samples
    group_idx = rng.choice(len(GROUPS), size=n, p=GROUP_PROBS)
    group = np.array(GROUPS, dtype=object)[group_idx]
    mu = np.array([_SEVERITY[g][0] for g in group])
    sd = np.array([_SEVERITY[g][1] for g in group])
    severity = rng.normal(mu, sd)

    male = rng.random(n) < np.where(group == "Demented", 0.52, 0.38)
    age = np.clip(np.round(rng.normal(74.0 + 1.6 * severity, 7.0)), 60, 98)
    educ = np.clip(np.round(rng.normal(15.2 - 0.7 * severity, 2.7)), 6, 23)
    # Socio-economic status: 1 (highest) .. 5 (lowest), inversely tied to education; ~5% not recorded.
    ses = np.clip(np.round(rng.normal(2.5 - 0.35 * (educ - 14.6), 0.8)), 1, 5)
    ses[rng.random(n) < 0.05] = np.nan

    # Cognitive reserve: education blunts the effect of severity on test scores.
    cog = severity - 0.08 * (educ - 14.6) + rng.normal(0.0, 0.45, n)
    mmse = np.clip(np.round(29.6 - 2.6 * np.maximum(cog, -0.3) + rng.normal(0.0, 1.2, n)), 4, 30)
    mmse[rng.random(n) < 0.01] = np.nan
    cdr_score = cog + rng.normal(0.0, 0.45, n)
    cdr = np.select([cdr_score < 0.75, cdr_score < 2.1, cdr_score < 3.4], [0.0, 0.5, 1.0], default=2.0)

    etiv = np.clip(np.round(rng.normal(np.where(male, 1590.0, 1420.0), 140.0)), 1100, 2010)
    nwbv = np.clip(0.778 - 0.0021 * (age - 60.0) - 0.011 * severity + rng.normal(0.0, 0.018, n), 0.64, 0.84)
    asf = 1755.0 / etiv * (1.0 + rng.normal(0.0, 0.004, n))

    subject_ids = np.array([f"OAS2_{i + 1:04d}" for i in range(n)], dtype=object)
    return {
        "Subject ID": subject_ids,
        "MRI ID": np.array([f"{s}_MR1" for s in subject_ids], dtype=object),
        "Group": group,
        "Visit": np.ones(n, dtype=np.int64),
        "MR Delay": np.zeros(n, dtype=np.int64),
        "M/F": np.where(male, "M", "F").astype(object),
        "Hand": np.full(n, "R", dtype=object),
        "Age": age.astype(np.int64),
        "EDUC": educ.astype(np.int64),
        "SES": ses,
        "MMSE": mmse,
        "CDR": cdr,
        "eTIV": etiv.astype(np.int64),
        "nWBV": np.round(nwbv, 3),
        "ASF": np.round(asf, 3),
    }


def oasis_like_frame(n_samples: int = 400, seed: int = 0) -> pd.DataFrame:
    """The generated subjects as a DataFrame with exactly the Kaggle OASIS longitudinal columns."""
    import pandas as pd

    columns = oasis_like_columns(n_samples, seed)
    return pd.DataFrame({name: columns[name] for name in KAGGLE_COLUMNS})
