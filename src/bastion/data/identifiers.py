"""Detect HIPAA Safe Harbor identifiers in a table, by column name and by sampled values.

Detection is deliberately conservative: a false positive costs a column (the report shows it and a
per-column ``keep`` override restores it); a false negative leaks PHI. Person names cannot be
recognised from values alone, so a column is treated as holding names when its name says so, or
when its name merely hints at a person (``*_name``, ``contact``, ``physician`` ...) *and* most sampled
values look like capitalised ``First Last`` / ``Last, First``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

IdentifierKind = Literal[
    "name",
    "email",
    "phone",
    "ssn",
    "mrn",
    "health_plan",
    "account",
    "license",
    "vehicle",
    "device",
    "biometric",
    "photo",
    "address",
    "geo",
    "zip",
    "date",
    "age",
    "ip",
    "url",
    "other_id",
]
KINDS: tuple[IdentifierKind, ...] = IdentifierKind.__args__  # type: ignore[attr-defined]

SAMPLE_SIZE = 1000
VALUE_THRESHOLD = 0.5  # share of sampled non-null cells that must match a kind
NAME_VALUE_THRESHOLD = 0.8


def _tokens(p: str) -> str:
    """``p`` as whole underscore-separated tokens of a normalised column name."""
    return rf"(?:^|_)(?:{p})(?:_|$)"


# Ordered: the first rule that matches wins ("email_address" is an email, not a street address).
_RAW_NAME_RULES: list[tuple[IdentifierKind, str]] = [
    ("email", _tokens(r"e_?mails?(_?addr(ess)?)?")),
    ("ip", _tokens(r"ip|ip_?addr(ess)?|ipv[46]|ip_v[46]|remote_addr")),
    ("url", _tokens(r"url|urls|uri|web_?site|home_?page|web_?page")),
    ("ssn", _tokens(r"ssn|ss_?no|ss_?num|social_security(_?(number|no|num))?|soc_?sec(_?(no|num))?")),
    ("phone", _tokens(r"phone|phones|telephone|tel|mobile|cell_?phone|fax|pager|phone_?number")),
    (
        "mrn",
        _tokens(
            r"mrn|medical_?record(_?(number|no|num|id))?|med_?rec(_?(no|num))?|patient_?(id|number|no|num)"
            r"|pat_?id|pid|chart_?(number|no|id)|hospital_?(number|no)|encounter_?id|visit_?id"
            r"|admission_?id|case_?(number|no|id)"
        ),
    ),
    (
        "health_plan",
        _tokens(
            r"health_?plan|beneficiary|insurance_?(id|number|no|num)|member_?(id|number|no)"
            r"|subscriber_?(id|number|no)|policy_?(number|no|id)|medicaid|medicare"
        ),
    ),
    (
        "account",
        _tokens(
            r"account(_?(number|no|num|id))?|acct(_?(number|no|num|id))?|iban|credit_?card|card_?(number|no)"
        ),
    ),
    ("vehicle", _tokens(r"vin|vehicle|license_?plate|licence_?plate|plate_?(number|no)")),
    (
        "license",
        _tokens(
            r"licen[cs]e(_?(number|no|num|id))?|certificate(_?(number|no|id))?|dea_?(number|no)"
            r"|passport(_?(number|no|id))?|national_?id|nhs_?(number|no)"
        ),
    ),
    (
        "device",
        _tokens(r"device_?(id|serial|number|no)|serial(_?(number|no|num))?|udi|imei|mac_?addr(ess)?"),
    ),
    ("biometric", _tokens(r"fingerprints?|retina(_?scan)?|iris_?scan|voice_?print|biometrics?")),
    ("photo", _tokens(r"photo(graph)?s?|face_?(image|photo)|portrait|headshot|picture")),
    ("age", _tokens(r"age|ages|age_?(years|yrs|months|weeks|days)")),
    (
        "date",
        _tokens(
            r"dates?|datetime|dt|dob|dod|timestamp|time_?stamp|ts|birth|birthday|birthdate|born|death"
            r"|died|deceased"
        ),
    ),
    (
        "date",
        (
            r"^(admission|admit|admitted|discharge|discharged|visit|encounter|surgery|procedure|expired)"
            r"(_?(time|on))?$|_at$"
        ),
    ),
    ("zip", _tokens(r"zip|zips|zip_?code|zipcode|zip5|zip4|zip_?plus_?4|postal_?code|post_?code")),
    (
        "address",
        _tokens(r"addr(ess)?(es)?|street(_?(name|address))?|residence|house_?number|apartment|apt|po_?box"),
    ),
    (
        "geo",
        _tokens(
            r"city|town|county|precinct|municipality|village|neighbou?rhood|borough|lat|latitude|lon|lng"
            r"|longitude|geo_?loc(ation)?|coordinates|gps|census_?(tract|block)"
        ),
    ),
    (
        "name",
        (
            r"^(name|names|patient|first|last|fname|lname|surname|forename|initials|nickname|username"
            r"|spouse|guardian|employer|next_of_kin|emergency_contact|mother|father|relative)$"
            + "|"
            + _tokens(
                r"(first|last|given|family|middle|maiden|full|patient|person|sur|nick|user|mothers?"
                r"|fathers?|spouse|guardian|kin|relative|employer|contact)_?names?|firstname|lastname"
                r"|given_?names?|next_?of_?kin|emergency_?contact"
            )
        ),
    ),
    (
        "other_id",
        r"^(id|uid|guid|uuid|subject_?id|person_?id|participant_?id|individual_?id|resident_?id|client_?id"
        r"|user_?id|record_?id|study_?id|enrollee_?id)$",
    ),
]
_NAME_RULES = [(kind, re.compile(pattern)) for kind, pattern in _RAW_NAME_RULES]

# A name that only hints at a person: a "name" kind needs the values to agree.
_NAME_HINT = re.compile(
    _tokens(
        r"names?|nm|contact|person|physician|doctor|provider|nurse|author|attending|referring|signed|by"
        r"|relative|caregiver|witness|owner"
    )
)

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"

_NAMED_VALUE_RES: dict[IdentifierKind, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    "ssn": re.compile(r"\d{3}[- ]\d{2}[- ]\d{4}"),
    "phone": re.compile(
        r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{4}(?:\s*(?:x|ext\.?)\s*\d{1,6})?",
        re.IGNORECASE,
    ),
    "url": re.compile(r"(?:https?|ftp)://\S+|www\.[^\s.]+(?:\.[^\s.]*)+", re.IGNORECASE),
    "zip": re.compile(r"\d{5}(?:-\d{4})?"),
    "mrn": re.compile(r"(?:MRN|MR|ACCT|ACC|PT)[-#: ]*\d{3,}", re.IGNORECASE),
    "date": re.compile(
        r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        r"|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?"
        rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}"
        rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}",
        re.IGNORECASE,
    ),
    "address": re.compile(
        r"(?:\d+[A-Za-z]?\s+(?:[A-Za-z0-9.'-]+\s+){0,5}"
        r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace"
        r"|ter|circle|cir|highway|hwy|parkway|pkwy|square|sq|trail|trl)\b\.?.*"
        r"|p\.?\s*o\.?\s*box\s+\d+.*)",
        re.IGNORECASE,
    ),
}
_NAME_WORD = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:-[A-Z][a-z]+|[A-Z][a-z]+)?"  # Smith, O'Neil, McDonald, Mary-Ann
_PERSON_NAME = re.compile(
    rf"{_NAME_WORD}(?:\s+[A-Z]\.?)?(?:\s+{_NAME_WORD}){{1,2}}|{_NAME_WORD},\s*{_NAME_WORD}(?:\s+[A-Z]\.?)?"
)

# Patterns searched *inside* free text, in this order (a URL goes before the e-mail or number it
# contains), each match replaced by "[REDACTED-<KIND>]". Quantifiers next to each other are bounded and
# runs are only entered at their head: these run on every text cell of an upload, so none may
# backtrack quadratically. Separate patterns scan faster than one alternation in Python's re.
_TEXT_PATTERNS: dict[str, str] = {
    "url": r"(?i:(?:https?|ftp)://[^\s<>\"']+|\bwww\.[^\s<>\"']+)",
    "email": r"(?<![A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "ssn": r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)",
    "mrn": r"(?i:\b(?:MRN|MR#|medical\s{1,3}record\s{1,3}(?:number|no\.?|#))\s{0,3}[#:]?\s{0,3}[A-Z0-9-]{3,})",
    "ip": r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])",
    "phone": (
        r"(?<![\d-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d)"
        r"|(?<![\d-])\+?1?\d{10}(?!\d)"
    ),
}
TEXT_REDACTIONS: dict[str, re.Pattern[str]] = {kind: re.compile(p) for kind, p in _TEXT_PATTERNS.items()}


def normalize_column_name(name: str) -> str:
    """``"PatientDOB"``, ``"Patient DOB"`` and ``"patient-dob"`` all become ``"patient_dob"``."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def kind_from_name(column: str) -> IdentifierKind | None:
    norm = normalize_column_name(column)
    for kind, pattern in _NAME_RULES:
        if pattern.search(norm):
            return kind
    return None


def is_birth_column(column: str) -> bool:
    """Birth years can reveal an age over 89, so they are grouped too."""
    return re.search(_tokens(r"dob|birth|birthday|birthdate|born"), normalize_column_name(column)) is not None


def age_unit_factor(column: str) -> int:
    """How many of the column's units make a year (age_months -> 12)."""
    norm = normalize_column_name(column)
    for pattern, factor in ((r"months?|mos?", 12), (r"weeks?|wks?", 52), (r"days?", 365)):
        if re.search(_tokens(pattern), norm):
            return factor
    return 1


def text_values(s: pd.Series) -> pd.Series:
    """The string-valued cells of ``s`` (index kept); numbers, dates and nulls are left out."""
    if s.dtype.kind in "biufcmM":
        return s.iloc[0:0]
    obj = s.astype(object)
    mask = obj.map(lambda v: isinstance(v, str))
    return obj[mask.astype(bool)]


def _sample(values: pd.Series) -> list[str]:
    if len(values) <= SAMPLE_SIZE:
        return [v.strip() for v in values.tolist()]
    step = len(values) / SAMPLE_SIZE
    return [str(values.iloc[int(i * step)]).strip() for i in range(SAMPLE_SIZE)]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _matches(kind: IdentifierKind, value: str) -> bool:
    if kind == "ip":
        return _is_ip(value)
    if kind == "address" and len(value) > 120:  # a long note that merely starts "3 days ... Dr."
        return False
    return _NAMED_VALUE_RES[kind].fullmatch(value) is not None


def kind_from_values(column: str, s: pd.Series) -> tuple[IdentifierKind, float] | None:
    """The identifier kind most sampled cells match, with that share; ``None`` below the threshold."""
    if s.dtype.kind == "M":
        return ("date", 1.0) if s.notna().any() else None
    sample = [v for v in _sample(text_values(s)) if v]
    if not sample:
        return None
    best: tuple[IdentifierKind, float] | None = None
    kinds: list[IdentifierKind] = ["email", "ssn", "phone", "ip", "url", "zip", "mrn", "date", "address"]
    for kind in kinds:
        share = sum(_matches(kind, v) for v in sample) / len(sample)
        if share >= VALUE_THRESHOLD and (best is None or share > best[1]):
            best = (kind, share)
    if best is None and _NAME_HINT.search(normalize_column_name(column)):
        share = sum(_PERSON_NAME.fullmatch(v) is not None for v in sample) / len(sample)
        if share >= NAME_VALUE_THRESHOLD:
            best = ("name", share)
    return best
