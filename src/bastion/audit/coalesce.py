"""Identical denials coalesced: one audit row per (what, who, from where) per window, with a count.

Anonymous probing and object enumeration arrive as bursts of the same refusal; writing each one
costs a hash-chained row (and let 1,000 anonymous requests write 2,079). The first denial of a kind
is written at once; identical ones within ``window`` seconds are only counted, and the next row of
that kind after the window carries ``repeated``: how many were folded into it. Memory is bounded
(``max_kinds``, oldest dropped first); a process restart loses at most one window's counts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import replace

from bastion.audit.log import AuditRecord

Kind = tuple[str | None, ...]


class DenialCoalescer:
    def __init__(self, window: float = 60.0, max_kinds: int = 10_000) -> None:
        self.window = window
        self.max_kinds = max_kinds
        self._kinds: OrderedDict[Kind, list[float]] = OrderedDict()  # kind -> [window start, folded]
        self._lock = threading.Lock()

    def admit(self, record: AuditRecord) -> AuditRecord | None:
        """The record to write now (with ``repeated`` when it closes a window), or None to skip it."""
        kind: Kind = (
            record.action,
            record.outcome,
            record.actor_id,
            record.source_ip,
            record.target_type,
            record.target_id,
            str(record.details.get("reason", record.details.get("status", ""))),
        )
        now = time.monotonic()
        with self._lock:
            entry = self._kinds.get(kind)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                return None
            folded = int(entry[1]) if entry is not None else 0
            self._kinds[kind] = [now, 0]
            self._kinds.move_to_end(kind)
            while len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)
        if folded:
            return replace(record, details={**record.details, "repeated": folded})
        return record
