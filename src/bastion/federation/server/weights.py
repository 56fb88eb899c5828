"""How much one site's update may weigh in a round: a site's claim is bounded, never just trusted.

A site's ``num_samples`` comes from the site itself, so it is clipped twice before it is used as a
weight (by every weighted strategy and by the round's metrics):

1. by the sample count the site declared when it registered (once, before round 1; it cannot be
   raised later), and
2. by the federation's ``max_site_share`` s: a site may weigh at most s / (1 - s) times the
   registered samples of the *other* active sites, so with everyone taking part no site holds more
   than a share s of the round. The bound uses the others' registered counts, so a site that
   registers an absurd count of its own gains nothing from it.

The cap is computed from participant rows, before and independently of any update, so it works
with streaming aggregation (weights are final when an update is folded in). Under secure
aggregation or DP the aggregate is already an unweighted mean of clipped deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from bastion.store import Database
from bastion.store.tables import FederationParticipant


@dataclass(frozen=True)
class WeightCap:
    max_share: float
    registered: Mapping[str, int]  # participant id -> samples declared at registration (active sites)

    def limit(self, participant_id: str) -> int | None:
        """The most this participant may weigh, or None when nothing bounds it."""
        bounds: list[int] = []
        own = self.registered.get(participant_id)
        if own is not None:
            bounds.append(own)
        if self.max_share < 1.0:
            others = sum(n for p, n in self.registered.items() if p != participant_id)
            if others > 0:
                bounds.append(max(1, int(others * self.max_share / (1.0 - self.max_share))))
        return min(bounds) if bounds else None

    def effective(self, participant_id: str, claimed: int) -> int:
        """The weight an update counts with: its claim, clipped by :meth:`limit` (at least 1)."""
        limit = self.limit(participant_id)
        return max(1, min(int(claimed), limit) if limit is not None else int(claimed))


def load_cap(db: Database, federation_id: str, max_share: float) -> WeightCap:
    with db.session() as s:
        rows = s.execute(
            select(FederationParticipant.id, FederationParticipant.registered_samples).where(
                FederationParticipant.federation_id == federation_id,
                FederationParticipant.revoked_at.is_(None),
                FederationParticipant.registered_samples.is_not(None),
            )
        ).all()
    return WeightCap(max_share, {str(p): int(n) for p, n in rows if n is not None})
