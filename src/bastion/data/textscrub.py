"""Free-text PHI scrubbing, offline: ``scrub_text(text, policy) -> ScrubResult``.

The stable API (other modules and the tabular de-identifier depend on exactly these names):
:class:`TextPolicy`, :class:`ScrubResult`, :func:`scrub_text`, :func:`find_phi`, :data:`PHI_KINDS`.
Detection (rules, dictionaries, context; no model download) lives in
:mod:`bastion.data.textscrub_rules`; consistent surrogates in :mod:`bastion.data.textscrub_surrogates`.

Order of work: every detector proposes spans; overlaps go to the longest span (then the stronger
rule); adjacent name tokens merge into one; each span becomes ``[KIND]`` or, under a ``surrogate``
policy, a keyed consistent stand-in. Kinds listed in ``keep`` are left as they are (and not counted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.data.textscrub_rules import DETECTORS, PHI_KINDS, PhiKind, PhiSpan
from bastion.errors import Invalid

__all__ = ["PHI_KINDS", "PhiKind", "PhiSpan", "ScrubResult", "TextPolicy", "find_phi", "scrub_text"]

MAX_TEXT_CHARS = 2_000_000  # one call; callers split larger inputs (a JSONL line, a cell)
_NAME_GAP = re.compile(r"[ \t]+|[ \t]*,[ \t]*|[ \t]*\.[ \t]*")


class TextPolicy(BaseModel):
    """How found PHI is replaced. ``surrogate`` needs a key of at least 16 bytes (hex or raw)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["placeholder", "surrogate"] = "placeholder"
    key: bytes | None = Field(default=None, repr=False)
    keep: frozenset[PhiKind] = frozenset()

    @field_validator("key")
    @classmethod
    def _key_length(cls, v: bytes | None) -> bytes | None:
        if v is not None and len(v) < 16:
            raise ValueError("a surrogate key must have at least 16 bytes")
        return v

    def model_post_init(self, _context: object) -> None:
        if self.mode == "surrogate" and self.key is None:
            raise Invalid("a surrogate policy needs a key", code="scrub_policy_invalid")


@dataclass(frozen=True)
class ScrubResult:
    """The scrubbed text and how many spans of each kind were replaced (every kind present, 0 if none)."""

    text: str
    counts_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts_by_kind.values())


def find_phi(text: str) -> list[PhiSpan]:
    """Non-overlapping PHI spans of ``text``, in order."""
    if len(text) > MAX_TEXT_CHARS:
        raise Invalid(f"text over {MAX_TEXT_CHARS} characters", code="text_too_long")
    candidates = [span for detect in DETECTORS for span in detect(text)]
    candidates.sort(key=lambda s: (-(s.end - s.start), -s.rank, s.start))
    taken: list[PhiSpan] = []
    occupied = bytearray(len(text))
    for span in candidates:
        if any(occupied[span.start : span.end]):
            continue
        occupied[span.start : span.end] = b"\x01" * (span.end - span.start)
        taken.append(span)
    taken.sort(key=lambda s: s.start)
    return _merge_names(text, taken)


def _merge_names(text: str, spans: list[PhiSpan]) -> list[PhiSpan]:
    merged: list[PhiSpan] = []
    for span in spans:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and prev.kind == span.kind == "NAME"
            and _NAME_GAP.fullmatch(text[prev.end : span.start])
        ):
            merged[-1] = PhiSpan(prev.start, span.end, "NAME", max(prev.rank, span.rank))
        else:
            merged.append(span)
    return merged


def scrub_text(text: str, policy: TextPolicy | None = None) -> ScrubResult:
    """``text`` with its PHI replaced per ``policy`` (placeholders by default)."""
    policy = policy or TextPolicy()
    counts: dict[str, int] = dict.fromkeys(PHI_KINDS, 0)
    surrogates = None
    if policy.mode == "surrogate":
        from bastion.data.textscrub_surrogates import Surrogates

        assert policy.key is not None
        surrogates = Surrogates(policy.key)
    out: list[str] = []
    pos = 0
    for span in find_phi(text):
        if span.kind in policy.keep:
            continue
        out.append(text[pos : span.start])
        value = text[span.start : span.end]
        out.append(surrogates.replace(span.kind, value) if surrogates else f"[{span.kind}]")
        counts[span.kind] += 1
        pos = span.end
    out.append(text[pos:])
    return ScrubResult("".join(out), counts)
