"""Tables printed to a pipe keep their natural width instead of folding every cell at 80 columns."""

from __future__ import annotations

import pytest

from bastion.cli.output import emit


def test_piped_table_is_not_folded(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {
            "id": "cb3024b4-4b6c-45b3-ad6a-3558efa40d3e",
            "name": "a-federation-name",
            "state": "completed",
            "completed_rounds": 2,
            "created_at": "2026-12-03T08:34:20.609981Z",
        }
    ]
    emit(rows, as_json=False, columns=list(rows[0]), title="Federations")
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "cb3024b4" in line]
    assert len(lines) == 1  # one row, one line: nothing folded
    assert "a-federation-name" in lines[0] and "2026-12-03T08:34:20.609981Z" in lines[0]
    assert "completed_rounds" in out


def test_short_table_keeps_the_default_width(capsys: pytest.CaptureFixture[str]) -> None:
    emit([{"id": "x", "n": 1}], as_json=False, columns=["id", "n"])
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 80
