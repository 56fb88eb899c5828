"""Consistent surrogates for :mod:`bastion.data.textscrub`: the same value under the same key always
becomes the same stand-in, so a scrubbed note still reads as one person, one address, one timeline.

Every choice is a keyed HMAC-SHA256 of the kind and the normalised value: without the key nobody can
test a guess, and a different key gives unrelated surrogates. Dates move by one per-key offset (so
intervals between dates survive); ages over 89 become ``90+`` (Safe Harbor's aggregate); ZIP codes
keep their 3-digit prefix unless that area is restricted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date, datetime, timedelta

from bastion.data.deid import RESTRICTED_ZIP3
from bastion.data.textscrub_rules import PhiKind, name_lists

_DATE_FORMATS = (
    "%m/%d/%Y", "%m/%d/%y", "%m-%d-%Y", "%m-%d-%y", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d.%m.%Y",
    "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y", "%d-%b-%Y", "%d-%b-%y", "%B %Y", "%b %Y",
    "%B %d", "%b %d", "%d %B", "%d %b", "%m/%d",
)  # fmt: skip


class Surrogates:
    """Stand-ins keyed by ``key`` (at least 16 bytes)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._shift = timedelta(days=1 + self._int("date-shift", "", 364))
        lists = name_lists()
        self._first = sorted(lists.first)
        self._last = sorted(lists.last)

    def _digest(self, kind: str, value: str) -> bytes:
        msg = f"{kind}\x00{value.strip().lower()}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def _int(self, kind: str, value: str, modulo: int) -> int:
        return int.from_bytes(self._digest(kind, value)[:8], "big") % modulo

    def _shape(self, kind: str, value: str) -> str:
        """Same shape: digits for digits, letters for letters, separators kept."""
        stream = self._digest(kind, value) * 4
        out = []
        for i, ch in enumerate(value):
            b = stream[i % len(stream)]
            if ch.isdigit():
                out.append(str(b % 10))
            elif ch.isalpha():
                letter = chr(ord("A") + b % 26)
                out.append(letter if ch.isupper() else letter.lower())
            else:
                out.append(ch)
        return "".join(out)

    def replace(self, kind: PhiKind, value: str) -> str:
        if kind == "NAME":
            return self._name(value)
        if kind == "DATE":
            return self._date(value)
        if kind == "AGE":
            return "90+" if value[:1].isdigit() else "elderly"
        if kind == "EMAIL":
            return f"user{self._int(kind, value, 10**6):06d}@example.org"
        if kind == "URL":
            return f"https://example.org/{self._int(kind, value, 16**8):08x}"
        if kind == "IP":
            n = self._int(kind, value, 256**3)
            return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"
        if kind == "ZIP":
            zip3 = value[:3]
            return "00000" if zip3 in RESTRICTED_ZIP3 else f"{zip3}00"
        if kind == "ADDRESS":
            street = self._last[self._int(kind, value, len(self._last))]
            if value[:1].isdigit():
                return f"{1 + self._int('num', value, 9899)} {street} Street"
            return f"{street}ville"
        return self._shape(kind, value)

    def _name(self, value: str) -> str:
        lists = name_lists()
        parts = []
        for token in re.split(r"(\s+|,\s*)", value):
            if not token or not token[0].isalpha():
                parts.append(token)
            elif len(token) <= 2 and token.endswith("."):  # an initial
                parts.append(f"{chr(ord('A') + self._int('NAME', token, 26))}.")
            else:
                pool = self._first if token.title() in lists.first else self._last
                parts.append(pool[self._int("NAME", token, len(pool))])
        return "".join(parts)

    def _date(self, value: str) -> str:
        cleaned = re.sub(r"(?<=\d)(st|nd|rd|th)\b", "", value).replace(",", "").replace(" of ", " ")
        cleaned = re.sub(r"\s+", " ", cleaned.replace(".", "" if "." in value[-4:] else ".")).strip()
        for fmt in _DATE_FORMATS:
            for candidate in (value.strip(), cleaned):
                try:
                    parsed = datetime.strptime(candidate, fmt).date()
                except ValueError:
                    continue
                has_year = "%Y" in fmt or "%y" in fmt
                base = parsed if has_year else date(2000, parsed.month, parsed.day)
                return (base - self._shift).strftime(fmt)
        return "[DATE]"
