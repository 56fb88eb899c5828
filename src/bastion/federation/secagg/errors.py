"""Why a secure-aggregation round stopped.

A round that cannot finish safely (too few clients left, a secret that cannot be rebuilt) aborts with
a machine code and a human reason; the reason names client ids and counts, never key material.
"""

from __future__ import annotations

from typing import Any

from bastion.errors import Conflict


class RoundAborted(Conflict):
    """The round cannot go on; ``reason`` says why. The server keeps nothing worth resuming."""

    code = "secagg_round_aborted"

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(f"secure aggregation round aborted: {reason}", **details)
        self.reason = reason
