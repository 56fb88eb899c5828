"""Where PHI sits in running text: the rules, dictionaries and context of :mod:`bastion.data.textscrub`.

Philter's approach, offline: regular expressions for the shaped identifiers (e-mail, URL, IP, phone,
SSN, dates), a label before the value for the unshaped ones (MRN, account, device, licence numbers),
and for person names three signals: a title (``Dr.``, ``Mrs.``), a context word (``patient``,
``daughter``, ``seen by``) or a capitalised token found in the shipped first-name/surname lists that
is not also a common English word. A detector returns candidate spans; overlaps are resolved by
:func:`bastion.data.textscrub.find_phi`. Recall is preferred to precision: a missed name leaks PHI,
an extra placeholder costs a word.

Every repetition is bounded (names <= 32 letters, domain labels <= 63, whitespace runs <= 8,
repeated labels <= 3): each match attempt costs a constant, so a crafted cell is scrubbed in linear
time (``tests/data/test_textscrub_adversarial.py``); an unbounded ``+`` over overlapping classes made
``"a." * 15000 + "@x"`` take 15 s.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

PhiKind = Literal[
    "NAME",
    "DATE",
    "AGE",
    "PHONE",
    "FAX",
    "EMAIL",
    "ADDRESS",
    "ZIP",
    "SSN",
    "MRN",
    "ACCOUNT",
    "URL",
    "IP",
    "DEVICE",
    "LICENSE",
]
PHI_KINDS: tuple[PhiKind, ...] = PhiKind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PhiSpan:
    """``text[start:end]`` is PHI of ``kind``; ``rank`` breaks ties between overlapping candidates."""

    start: int
    end: int
    kind: PhiKind
    rank: int = 0


# --------------------------------------------------------------------------------------------------
# Dictionaries (package data, loaded once)


def _read_list(name: str) -> frozenset[str]:
    text = resources.files("bastion.data").joinpath("phi_lists", name).read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


# Capitalised words of clinical text that collide with name lists (eponyms, drugs, places in the
# hospital); a name that is one of these still counts when a title or a context word precedes it.
_CLINICAL = [
    "alzheimer",
    "parkinson",
    "crohn",
    "hodgkin",
    "cushing",
    "addison",
    "graves",
    "bell",
    "foley",
    "apgar",
    "gram",
    "babinski",
    "murphy",
    "kernig",
    "homan",
    "homans",
    "down",
    "wilson",
    "barrett",
    "bowen",
    "paget",
    "raynaud",
    "sjogren",
    "hashimoto",
    "guillain",
    "barre",
    "kaposi",
    "wernicke",
    "korsakoff",
    "tourette",
    "huntington",
    "marfan",
    "turner",
    "klinefelter",
    "lyme",
    "whipple",
    "ewing",
    "wilms",
    "burkitt",
    "hunter",
    "hurler",
    "fanning",
    "holter",
    "swan",
    "ganz",
    "mallory",
    "weiss",
    "meckel",
    "horner",
    "bruce",
    "doppler",
    "allen",
    "romberg",
    "phalen",
    "tinel",
    "lachman",
    "mcmurray",
    "trendelenburg",
    "valsalva",
    "heimlich",
    "kussmaul",
    "cheyne",
    "stokes",
    "brown",
    "sequard",
    "jackson",
    "moore",
    "lewis",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "patient",
    "doctor",
    "nurse",
    "emergency",
    "medicine",
    "internal",
    "family",
    "general",
    "surgery",
    "clinic",
    "hospital",
    "center",
    "medical",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "grant",
    "hope",
    "will",
    "faith",
    "joy",
    "rich",
    "mark",
    "bill",
    "frank",
    "admitted",
    "discharged",
    "positive",
    "negative",
    "plan",
    "dr",
    "mr",
    "mrs",
    "ms",
    "mx",
    "miss",
    "prof",
    "rev",
    "sr",
    "fr",
    "md",
    "rn",
    "np",
]


@dataclass(frozen=True)
class NameLists:
    first: frozenset[str]
    last: frozenset[str]
    common: frozenset[str]

    def is_name(self, token: str) -> bool:
        """A token that is a listed name in any case (``SMITH``, ``Smith``)."""
        t = token.title() if token.isupper() else token
        return t in self.first or t in self.last

    def is_confident_name(self, token: str) -> bool:
        """A listed name that is not also an everyday or clinical word: a name without context."""
        return self.is_name(token) and token.lower() not in self.common


@cache
def name_lists() -> NameLists:
    common = _read_list("common_words.txt") | frozenset(_CLINICAL)
    return NameLists(_read_list("first_names.txt"), _read_list("last_names.txt"), common)


# --------------------------------------------------------------------------------------------------
# Patterns

_STATES = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
    "PR",
]
_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|"
    "Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|"
    "Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|"
    "New Mexico|New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|"
    "Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|"
    "West Virginia|Wisconsin|Wyoming"
)
_STATE = rf"(?:{'|'.join(_STATES)}|{_STATE_NAMES})"
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_ORD = r"(?:st|nd|rd|th)?"
_CAP = r"[A-Z][^\W\d_'\u2019]{0,30}[^\W\d_](?:['\u2019][^\W\d_]{1,30})?(?:-[A-Z][^\W\d_]{1,30})?"
_STREET = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    r"Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Row|Alley|Plaza)"
)
_ID_VALUE = r"((?=[A-Za-z0-9-]{0,40}\d)[A-Za-z0-9][A-Za-z0-9-]{2,}[A-Za-z0-9])"
_ID_GLUE = r"[\s:#=.]{0,6}(?i:(?:number|num|no|nbr|id|is|was|of)\b[\s:#=.]{0,6}){0,3}"


def _labelled(label: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?i:\b(?:{label})(?:[\s-]{{1,3}}(?:{label})){{0,3}})(?![A-Za-z]){_ID_GLUE}{_ID_VALUE}"
    )


_LABELS: list[tuple[PhiKind, re.Pattern[str]]] = [
    ("SSN", _labelled(r"ssn|social security|soc\.? sec\.?|ss#")),
    (
        "MRN",
        _labelled(
            r"mrn|mr#|mr|medical record|med\.? rec(?:ord)?|record|chart|patient id|pt id|"
            r"hospital number|unit number|encounter"
        ),
    ),
    (
        "ACCOUNT",
        _labelled(
            r"account|acct|a/c|billing|invoice|health plan|member|insurance|policy|subscriber|"
            r"medicaid|medicare|group|claim|beneficiary|payer id"
        ),
    ),
    (
        "DEVICE",
        _labelled(r"serial|s/n|sn|device|udi|imei|pacemaker|defibrillator|icd|implant|pump|lot|model"),
    ),
    (
        "LICENSE",
        _labelled(
            r"licen[cs]e|driver'?s licen[cs]e|dl|dea|npi|certificate|plate|license plate|vin|"
            r"vehicle(?: identification)?"
        ),
    ),
]

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
_URL = re.compile(
    r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'\])]+"
    r"|\b[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,8}\.(?:com|org|net|edu|gov|io|health|info|us)"
    r"(?:/[^\s<>\"'\])]*)?\b"
)
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w-])"
)
_FAX_BEFORE = re.compile(r"(?i)\bfax\b[^\d\n]{0,20}$")
_DATES = [
    re.compile(r"(?<![\d/.-])\d{1,2}[/-]\d{1,2}[/-](?:\d{4}|\d{2})(?![\d/-]|\.\d)"),
    re.compile(r"(?<![\d/.-])(?:19|20)\d{2}[-/.]\d{1,2}[-/.]\d{1,2}(?![\d/-]|\.\d)"),
    re.compile(r"(?<![\d.])\d{1,2}\.\d{1,2}\.(?:19|20)\d{2}(?![\d.])"),
    re.compile(rf"(?i:\b{_MONTH})\s{{1,8}}\d{{1,2}}{_ORD}(?:,?\s{{1,8}}(?:19|20)\d{{2}})?\b"),
    re.compile(rf"\b\d{{1,2}}{_ORD}\s{{1,8}}(?:of\s{{1,8}})?(?i:{_MONTH})(?:,?\s{{1,8}}(?:19|20)\d{{2}})?\b"),
    re.compile(rf"(?i:\b{_MONTH}),?\s{{1,8}}(?:19|20)\d{{2}}\b"),
    re.compile(rf"\b\d{{1,2}}-(?i:{_MONTH})-(?:\d{{4}}|\d{{2}})\b"),
]
# m/d without a year is a date only after a word that introduces one ("5/10 pain" is not).
_SHORT_DATE = re.compile(
    r"(?i:\b(?:on|since|from|until|till|by|dated?|dob|d\.o\.b\.|admitted|discharged|seen|"
    r"through|thru|of|before|after)\s{0,8}:?\s{0,8})(\d{1,2}/\d{1,2})(?![\d/])"
)
_AGE = [
    re.compile(
        r"(?<!\d)(9\d|1[0-4]\d)(?=\s{0,8}-?\s{0,8}(?:years?|yrs?|y/o|y\.o\.?|yo|year-old|yr-old)(?![A-Za-z]))",
        re.I,
    ),
    re.compile(r"(?i:\bage[d]?\s{0,8}:?\s{0,8}(?:of\s{1,8})?)(9\d|1[0-4]\d)(?!\d)"),
    re.compile(r"(?<!\d)(9\d|1[0-4]\d)\s?(?:M|F|yo[mf]?)\b"),
    re.compile(r"(?i:\b(?:nonagenarian|centenarian)\b)"),
]
_ZIP = [
    re.compile(rf"\b{_STATE},?\s{{1,8}}(\d{{5}}(?:-\d{{4}})?)(?![\d-])"),
    re.compile(r"(?i:\bzip(?:\s{0,8}code)?\s{0,8}:?\s{0,8})(\d{5}(?:-\d{4})?)(?![\d-])"),
]
_ADDRESS = [
    re.compile(
        rf"\b\d{{1,6}}\s{{1,8}}(?:[NSEW]\.?\s{{1,8}})?(?:(?:{_CAP}|\d{{1,6}}{_ORD})\s{{1,8}}){{1,3}}{_STREET}\b\.?"
        r"(?:,?\s{1,8}(?:Apt|Apartment|Unit|Suite|Ste|#)\.?\s{0,8}#?\s{0,8}[A-Za-z0-9-]{1,12})?"
    ),
    re.compile(r"\bP\.?\s?O\.?\s{1,8}Box\s{1,8}\d+\b", re.I),
    # "Springfield, IL" / "Ann Arbor, Michigan": the city; the state itself is not PHI.
    re.compile(rf"\b((?:{_CAP}\s){{0,2}}{_CAP}),\s{{1,8}}(?={_STATE}\b)"),
    re.compile(
        rf"(?i:\b(?:lives|living|resides|residing|moved|relocated|home|address|located|from)\s{{1,8}}"
        rf"(?:in|at|to|is)?\s{{0,8}}:?\s{{0,8}})(?![A-Z]{{2,40}}\b)((?:\d{{1,6}}\s{{1,8}})?{_CAP}(?:\s{{1,8}}{_CAP}){{0,3}})"
    ),
    # "... 12 Oak St in Boise": the town after a street address.
    re.compile(
        rf"\b\d{{1,6}}\s{{1,8}}(?:(?:{_CAP}|\d{{1,6}}{_ORD})\s{{1,8}}){{1,3}}{_STREET}\b\.?,?\s{{1,8}}in\s{{1,8}}({_CAP}(?:\s{_CAP})?)"
    ),
]

_NAME_SEQ = rf"(?:[A-Z]\.\s{{0,8}})?{_CAP}(?:\s{{1,8}}(?:[A-Z]\.\s{{0,8}})?{_CAP}){{0,2}}"
_TITLE = re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Rev|Sr|Fr)\.?\s{{1,8}}({_NAME_SEQ})")
_NAME_CONTEXT = re.compile(
    r"(?i:\b(?:patient|pt|name|named|seen by|signed by|electronically signed by|dictated by|"
    r"transcribed by|attending|resident|fellow|intern|physician|pcp|provider|surgeon|nurse|rn|np|"
    r"pa-c|son|daughter|wife|husband|mother|father|brother|sister|spouse|partner|friend|neighbor|"
    r"caregiver|guardian|grandson|granddaughter|niece|nephew|aunt|uncle|referred by|cc|"
    r"discussed with|accompanied by|spoke with|contact|witness|consent from|called|informed)"
    r"\b\s{0,8}(?:is|was|named|:|,|-)?\s{0,8})"
    rf"({_NAME_SEQ})"
)
_RELATION = (
    r"son|daughter|nephew|niece|wife|husband|mother|father|brother|sister|spouse|partner|friend|"
    r"neighbou?r|caregiver|guardian|grandson|granddaughter|aunt|uncle|cousin|md|do|rn|np|pa-c|phd"
)
_NAME_AFTER = re.compile(
    rf"({_NAME_SEQ})(?=\s{{0,8}}[(,]\s{{0,8}}(?:the\s{{1,8}})?(?:patient['\u2019]s\s{{1,8}}|pt['\u2019]s\s{{1,8}}|her\s{{1,8}}|his\s{{1,8}})?(?i:{_RELATION})\b)"
)
_WORD = re.compile(r"[^\W\d_][^\W\d_'\u2019]*(?:['\u2019][^\W\d_]+)?(?:-[^\W\d_]+)?")
_EPONYM_AFTER = re.compile(
    r"^(?:['\u2019]s?)?\s{1,8}(?:disease|syndrome|sign|test|maneuver|manoeuvre|law|palsy|sarcoma|lymphoma|"
    r"ulcer|phenomenon|criteria|score|scale|reflex|triad|node|classification|catheter|tube|"
    r"procedure|operation|fracture|cyst|hernia|contracture|disorder|diet|position|method|"
    r"protocol|tumou?r|anomaly|equation|formula|hospital|clinic|center|centre|university)\b",
    re.I,
)


# --------------------------------------------------------------------------------------------------
# Detectors


def _spans(pattern: re.Pattern[str], text: str, kind: PhiKind, rank: int) -> Iterator[PhiSpan]:
    for m in pattern.finditer(text):
        g = 1 if pattern.groups else 0
        if m.start(g) < m.end(g):
            yield PhiSpan(m.start(g), m.end(g), kind, rank)


def _valid_numeric_date(s: str) -> bool:
    parts = [int(p) for p in re.split(r"[/.-]", s) if p.isdigit()]
    if len(parts) != 3:
        return False
    a, b, c = parts
    if a > 31:  # year first
        return 1 <= b <= 12 and 1 <= c <= 31
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)


def _dates(text: str) -> Iterator[PhiSpan]:
    for i, pattern in enumerate(_DATES):
        for span in _spans(pattern, text, "DATE", 2):
            if i <= 2 and not _valid_numeric_date(text[span.start : span.end]):
                continue
            yield span
    for span in _spans(_SHORT_DATE, text, "DATE", 2):
        m, d = (int(x) for x in text[span.start : span.end].split("/"))
        if 1 <= m <= 12 and 1 <= d <= 31:
            yield span


def _ips(text: str) -> Iterator[PhiSpan]:
    yield from _spans(_IPV4, text, "IP", 3)
    for m in _IPV6.finditer(text):
        candidate = m.group(0)
        if candidate.count(":") >= 2 and any(c.isalnum() for c in candidate):
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield PhiSpan(m.start(), m.end(), "IP", 3)


def _urls(text: str) -> Iterator[PhiSpan]:
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?":
            end -= 1
        if "@" not in text[max(0, m.start() - 1) : m.start()]:  # the domain of an e-mail
            yield PhiSpan(m.start(), end, "URL", 2)


def _phones(text: str) -> Iterator[PhiSpan]:
    for span in _spans(_PHONE, text, "PHONE", 1):
        kind: PhiKind = "FAX" if _FAX_BEFORE.search(text[max(0, span.start - 30) : span.start]) else "PHONE"
        yield PhiSpan(span.start, span.end, kind, 1)


def _name_tokens(text: str, start: int, end: int, lists: NameLists) -> Iterator[PhiSpan]:
    """Each token of a context-introduced name that is not an everyday word (``Patient Denies``)."""
    for m in _WORD.finditer(text, start, end):
        token = m.group(0)
        if token.lower() not in lists.common or lists.is_name(token):
            yield PhiSpan(m.start(), m.end(), "NAME", 4)
    for m in re.finditer(r"\b[A-Z]\.", text[start:end]):  # initials
        yield PhiSpan(start + m.start(), start + m.end(), "NAME", 4)


def _names(text: str) -> Iterator[PhiSpan]:
    lists = name_lists()
    for pattern in (_TITLE, _NAME_CONTEXT, _NAME_AFTER):
        for m in pattern.finditer(text):
            yield from _name_tokens(text, m.start(1), m.end(1), lists)
    words = list(_WORD.finditer(text))
    hits: set[int] = set()
    for i, m in enumerate(words):
        token = m.group(0)
        if not token[0].isupper() or len(token) < 2 or not lists.is_confident_name(token):
            continue
        if _EPONYM_AFTER.match(text, m.end()):
            continue
        hits.add(i)
    # Grow each hit over neighbours that are names too, or unknown capitalised words right after a
    # listed first name ("John Oyelaran"), or "Last, First".
    grown = set(hits)
    for i in sorted(hits):
        for j in (i + 1, i + 2):
            if j >= len(words):
                break
            gap = text[words[j - 1].end() : words[j].start()]
            token = words[j].group(0)
            if gap not in (" ", ", ") or not token[0].isupper():
                break
            if lists.is_name(token) or (gap == " " and token.lower() not in lists.common):
                grown.add(j)
            else:
                break
        if i > 0:
            prev = words[i - 1]
            gap = text[prev.end() : words[i].start()]
            word = prev.group(0)
            if gap == " " and word[0].isupper() and word.lower() not in lists.common:
                grown.add(i - 1)
    for i in grown:
        yield PhiSpan(words[i].start(), words[i].end(), "NAME", 3)


def _simple(kind: PhiKind, rank: int, *patterns: re.Pattern[str]) -> Callable[[str], Iterator[PhiSpan]]:
    def detect(text: str) -> Iterator[PhiSpan]:
        for pattern in patterns:
            yield from _spans(pattern, text, kind, rank)

    return detect


def _labelled_ids(text: str) -> Iterator[PhiSpan]:
    for kind, pattern in _LABELS:
        yield from _spans(pattern, text, kind, 5)


DETECTORS: tuple[Callable[[str], Iterator[PhiSpan]], ...] = (
    _simple("EMAIL", 6, _EMAIL),
    _urls,
    _ips,
    _simple("SSN", 5, _SSN),
    _labelled_ids,
    _phones,
    _dates,
    _simple("AGE", 4, *_AGE),
    _simple("ZIP", 4, *_ZIP),
    _simple("ADDRESS", 1, *_ADDRESS),
    _names,
)
