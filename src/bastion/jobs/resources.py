"""What a job reserves on the executor: ``{cpus, gpus, memory_mb}``, from the job or its profile.

The defaults come from the same resource profiles the cost estimate prices (bastion.jobs.pricing):
a job on ``gpu-small`` asks Ray for one GPU unless it says otherwise. A profile an admin added
without a known shape reserves one CPU. The local executor runs every job on this machine and
only counts jobs (``max_concurrent``); Ray places tasks by these figures and queues what does not
fit, which the job shows as the stage ``waiting_for_resources``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bastion.errors import Invalid

PROFILE_RESOURCES: dict[str, dict[str, float]] = {
    "cpu-small": {"cpus": 2.0, "gpus": 0.0, "memory_mb": 8192.0},
    "cpu-large": {"cpus": 8.0, "gpus": 0.0, "memory_mb": 32768.0},
    "gpu-small": {"cpus": 8.0, "gpus": 1.0, "memory_mb": 32768.0},
}
FALLBACK = {"cpus": 1.0, "gpus": 0.0, "memory_mb": 0.0}
LIMITS = {"cpus": 1024.0, "gpus": 64.0, "memory_mb": 4 * 1024 * 1024.0}
_MEMORY = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*(k|m|g|t)?i?b?\s*")
_UNITS = {"k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024.0, None: 1.0}


def _memory_mb(value: Any) -> float:
    """MiB from a number (MiB) or text such as ``512M``, ``8GiB``, ``2g``."""
    if isinstance(value, bool):
        raise Invalid(
            "resources.memory must be a number of MiB or a size such as '8GiB'", code="invalid_resources"
        )
    if isinstance(value, int | float):
        return float(value)
    match = _MEMORY.fullmatch(str(value))
    if match is None:
        raise Invalid(
            "resources.memory must be a number of MiB or a size such as '8GiB'", code="invalid_resources"
        )
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _UNITS[unit]


def resolve(requested: Mapping[str, Any] | None, profile: str) -> dict[str, float]:
    """The job's resources: what it asked for, the rest from its profile; refuses odd values."""
    out = dict(PROFILE_RESOURCES.get(profile, FALLBACK))
    for key, raw in (requested or {}).items():
        name = "memory_mb" if key in ("memory", "memory_mb") else key
        if name not in LIMITS:
            raise Invalid(
                f"unknown resource {key!r}; valid resources: cpus, gpus, memory",
                code="invalid_resources",
            )
        try:
            value = _memory_mb(raw) if name == "memory_mb" else float(raw)
        except (TypeError, ValueError):
            raise Invalid(f"resources.{key} must be a number", code="invalid_resources") from None
        if not (0 <= value <= LIMITS[name]):
            raise Invalid(f"resources.{key} must be between 0 and {LIMITS[name]:g}", code="invalid_resources")
        out[name] = value
    if out["cpus"] <= 0 and out["gpus"] <= 0:
        raise Invalid("a job needs at least some CPU or GPU", code="invalid_resources")
    return out
