"""Columns that are text rather than codes: found by their values, scrubbed with the one free-text
scrubber (:mod:`bastion.data.textscrub`), and recognised person names by value.

A column is *free text* when its string cells read like prose (several words on average) or are
mostly distinct and not short (a note per row). A column holds *person names by value* when most
sampled cells are, nearly entirely, a name the scrubber's dictionaries and context rules find. Both
decisions look at a bounded sample, so they cost O(sample) per column whatever the table's size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion.data.identifiers import SAMPLE_SIZE, text_values

if TYPE_CHECKING:
    import pandas as pd

NAME_CELL_COVERAGE = 0.6  # share of a cell's letters inside NAME spans for the cell to be a name
NAME_COLUMN_SHARE = 0.5  # share of sampled cells that are names for the column to hold names
PROSE_MEAN_WORDS = 4.0
DISTINCT_SHARE = 0.5
MIN_DISTINCT = 20
MIN_MEAN_CHARS = 12


def _sample(s: pd.Series) -> list[str]:
    text = text_values(s)
    values = [v.strip() for v in text.tolist() if v.strip()]
    if len(values) <= SAMPLE_SIZE:
        return values
    step = len(values) / SAMPLE_SIZE
    return [values[int(i * step)] for i in range(SAMPLE_SIZE)]


def _is_name(cell: str) -> bool:
    from bastion.data.textscrub import find_phi

    letters = sum(ch.isalpha() for ch in cell)
    if not letters or len(cell) > 80:
        return False
    covered = sum(
        sum(ch.isalpha() for ch in cell[span.start : span.end])
        for span in find_phi(cell)
        if span.kind == "NAME"
    )
    return covered / letters >= NAME_CELL_COVERAGE


def name_share(s: pd.Series) -> float:
    """Share of sampled string cells that are person names (0 when the column holds no text)."""
    sample = _sample(s)
    if not sample:
        return 0.0
    distinct = list(dict.fromkeys(sample))
    verdict = {cell: _is_name(cell) for cell in distinct}
    return sum(verdict[cell] for cell in sample) / len(sample)


def text_profile(s: pd.Series) -> dict[str, Any] | None:
    """Why ``s`` counts as free text (mean words, distinct share), or None when it does not."""
    sample = _sample(s)
    if not sample:
        return None
    words = sum(len(cell.split()) for cell in sample) / len(sample)
    chars = sum(len(cell) for cell in sample) / len(sample)
    distinct = len(set(sample))
    share = distinct / len(sample)
    prose = words >= PROSE_MEAN_WORDS
    high_cardinality = share >= DISTINCT_SHARE and distinct >= MIN_DISTINCT and chars >= MIN_MEAN_CHARS
    if not (prose or high_cardinality):
        return None
    return {
        "mean_words": round(words, 1),
        "distinct_share": round(share, 2),
        "why": "reads like prose" if prose else "mostly distinct text values",
    }


MAX_KNOWN_VALUES = 20_000
MIN_KNOWN_CHARS = 3


@dataclass(frozen=True)
class KnownValues:
    """The table's own identifier values, each with its kind, as one alternation."""

    pattern: re.Pattern[str]
    kinds: dict[str, str]

    def replace(self, text: str) -> tuple[str, dict[str, int]]:
        counts: dict[str, int] = {}

        def placeholder(m: re.Match[str]) -> str:
            kind = self.kinds.get(m.group(0), "identifier").upper()
            counts[kind] = counts.get(kind, 0) + 1
            return f"[{kind}]"

        return self.pattern.sub(placeholder, text), counts


def known_values(columns: dict[str, tuple[str, pd.Series]]) -> KnownValues | None:
    """One pattern for the table's own identifier values (``column -> (kind, values)``): a name found
    in a ``patient`` column is removed from the notes too, even when no dictionary knows it. Names
    also contribute each capitalised word of three letters or more (a surname alone in a note)."""
    found: dict[str, str] = {}
    for kind, s in columns.values():
        for value in text_values(s).drop_duplicates().tolist()[:MAX_KNOWN_VALUES]:
            value = value.strip()
            if len(value) >= MIN_KNOWN_CHARS:
                found.setdefault(value, kind)
            if kind == "name":
                for word in re.findall(r"[A-Z][a-zA-Z'-]{2,}", value):
                    found.setdefault(word, kind)
    if not found:
        return None
    ordered = sorted(found, key=len, reverse=True)[:MAX_KNOWN_VALUES]
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(v) for v in ordered) + r")(?!\w)")
    return KnownValues(pattern, found)


def scrub_column(s: pd.Series, known: KnownValues | None = None) -> tuple[pd.Series, dict[str, int]]:
    """Every string cell through ``scrub_text`` (placeholders such as ``[NAME]``), after the table's
    own identifier values (``known``) are replaced by their kind (``[NAME]``, ``[SSN]`` ...); counts
    per kind, both passes together."""
    from bastion.data.textscrub import TextPolicy, scrub_text

    policy = TextPolicy()
    totals: dict[str, int] = {}
    memo: dict[str, tuple[str, dict[str, int]]] = {}
    out = s.astype(object).copy()
    for index, value in zip(s.index, s.astype(object).tolist(), strict=True):
        if not isinstance(value, str):
            continue
        if value not in memo:
            cleaned, counts = known.replace(value) if known is not None else (value, {})
            result = scrub_text(cleaned, policy)
            for k, n in result.counts_by_kind.items():
                if n:
                    counts[k] = counts.get(k, 0) + n
            memo[value] = (result.text, counts)
        text, counts = memo[value]
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n
        out.at[index] = text
    return out, totals
