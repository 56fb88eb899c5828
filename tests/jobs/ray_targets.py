"""Job targets for the Ray executor tests (they run on Ray nodes, or in local job processes)."""

from __future__ import annotations

import json
import os
from typing import Any


def exposure(ctx: Any) -> dict[str, Any]:
    """Everything the task can see of its surroundings: environment, spec and inputs, as text."""
    inputs = getattr(ctx, "inputs", {})
    return {
        "results": {
            "environ": json.dumps(dict(os.environ)),
            "spec": json.dumps(ctx.spec, default=str),
            "inputs": repr(
                {
                    k: (type(v).__name__, sorted(v) if isinstance(v, dict) else getattr(v, "meta", None))
                    for k, v in inputs.items()
                }
            ),
            "vault": _vault_refused(ctx),
        }
    }


def _vault_refused(ctx: Any) -> bool:
    try:
        ctx.vault()
    except RuntimeError:
        return True
    return False
