"""Keyset cursors: the one cursor format every list uses, and the older ones it still reads.

The fine-tuning and sign-up lists wrote ``[<ISO time>, <id>]`` before they used Keyset; such a
cursor names the same position as the Keyset cursor of the same row, so a client holding one pages
on. Anything else is 422 ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

import pytest

from bastion.context import Context
from bastion.errors import Invalid
from bastion.store.paging import Keyset, encode_cursor
from bastion.store.tables import JobEvent, SignupRequest, TrainingJob

JOBS = Keyset(TrainingJob.created_at, TrainingJob.id)
AT = datetime(2026, 12, 3, 15, 0, 0, 123456)


def _old(*parts: object) -> str:
    """How bastion.llm.service.encode_cursor wrote a cursor (json.dumps' default separators)."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def test_old_and_new_cursors_name_the_same_row() -> None:
    new = encode_cursor([AT, "job-1"])
    assert new != _old(AT.isoformat(), "job-1")
    assert JOBS.decode(new) == JOBS.decode(_old(AT.isoformat(), "job-1")) == [AT, "job-1"]


def test_event_cursor_is_unchanged() -> None:
    events = Keyset(JobEvent.id, descending=False)
    assert encode_cursor([42]) == _old(42)
    assert events.decode(_old(42)) == [42]


@pytest.mark.parametrize(
    "cursor",
    [
        _old("yesterday", "job-1"),  # not a time
        _old("2026-12-03T15:00:00+00:00", "job-1"),  # an aware time: never issued (times are naive UTC)
        _old(AT.isoformat()),  # too short
        _old(AT.isoformat(), 7),  # an id that is no string
        encode_cursor([42]),
        "!!!",
    ],
)
def test_bad_cursors_are_422(cursor: str) -> None:
    with pytest.raises(Invalid) as caught:
        JOBS.decode(cursor)
    assert caught.value.code == "invalid_cursor"


def test_signup_cursor_of_the_previous_code_still_pages(ctx: Context) -> None:
    with ctx.db.session() as s:
        s.add_all(
            SignupRequest(username=f"u{i}", email=f"u{i}@example.org", password_hash="x") for i in range(5)
        )
    signups = ctx.services.signups
    first, cursor = signups.pending(limit=2)
    assert cursor is not None
    old = _old(first[-1].created_at.isoformat(), first[-1].id)
    by_new, by_old = signups.pending(limit=2, cursor=cursor), signups.pending(limit=2, cursor=old)
    assert [r.id for r in by_new[0]] == [r.id for r in by_old[0]] and len(by_new[0]) == 2
    assert by_new[1] == by_old[1] is not None
    everything = [r.username for r in first + by_new[0] + signups.pending(limit=2, cursor=by_new[1])[0]]
    assert sorted(everything) == [f"u{i}" for i in range(5)]
