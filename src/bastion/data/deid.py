"""HIPAA Safe Harbor de-identification of an uploaded table, before anything is stored.

Each column is matched against the identifier kinds of :mod:`bastion.data.identifiers`; the upload's
:class:`Policy` says what happens to each kind (drop, keyed-HMAC pseudonym, generalisation or an
explicit keep) and may override single columns. Columns that are not identifiers still have SSNs,
e-mails, phone numbers, MRNs, IPs and URLs found *inside* their text replaced by ``[REDACTED-KIND]``.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.clock import aware_utcnow
from bastion.data.freetext import known_values, scrub_column, text_profile
from bastion.data.identifiers import (
    TEXT_REDACTIONS,
    IdentifierKind,
    age_unit_factor,
    is_birth_column,
    kind_from_name,
    kind_from_values,
    text_values,
)
from bastion.errors import ConfigError, Invalid

if TYPE_CHECKING:
    import pandas as pd

Action = Literal["drop", "pseudonymize", "generalize", "keep"]
ReportedAction = Literal["drop", "pseudonymize", "generalize", "keep", "redact", "scrub", "none"]
DetectedBy = Literal["name", "values", "policy"]

SAFE_HARBOR_DEFAULTS: dict[IdentifierKind, Action] = {
    "name": "drop",
    "email": "drop",
    "phone": "drop",
    "ssn": "drop",
    "mrn": "pseudonymize",
    "health_plan": "pseudonymize",
    "account": "pseudonymize",
    "license": "drop",
    "vehicle": "drop",
    "device": "drop",
    "biometric": "drop",
    "photo": "drop",
    "address": "drop",
    "geo": "drop",
    "zip": "generalize",
    "date": "generalize",
    "age": "generalize",
    "ip": "drop",
    "url": "drop",
    "other_id": "pseudonymize",
}
GENERALIZABLE: frozenset[str] = frozenset({"date", "zip", "age"})
# 3-digit ZIP prefixes whose area held 20,000 people or fewer (HHS de-identification guidance, 2000 census).
_RESTRICTED = "036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893"
RESTRICTED_ZIP3: frozenset[str] = frozenset(_RESTRICTED.split(" "))
MIN_KEY_BYTES = 16
_PSEUDONYM_CONTEXT = b"bastion-pseudonym-v1\x00"
_YEAR = re.compile(r"(?<!\d)(1[89]\d{2}|2[01]\d{2})(?!\d)")
_ZIP = re.compile(r"\s*(\d{3,5})(?:[-\s]?\d{4})?\s*")
_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*")


class ColumnRule(BaseModel):
    """What to do with one named column; ``kind`` declares what it holds when detection missed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    kind: IdentifierKind | None = None


class Policy(BaseModel):
    """De-identification policy given at upload. Unlisted kinds follow :data:`SAFE_HARBOR_DEFAULTS`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: dict[IdentifierKind, Action] = Field(default_factory=dict)
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    redact_free_text: bool = True
    pseudonym_hex_chars: int = Field(default=16, ge=8, le=64)
    reference_year: int | None = Field(default=None, ge=1900, le=2200)

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """Allow ``{"notes": "drop"}`` as well as ``{"notes": {"action": "drop"}}``."""
        if isinstance(value, Mapping):
            return {k: {"action": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _generalize_is_defined(self) -> Policy:
        for kind, action in self.defaults.items():
            if action == "generalize" and kind not in GENERALIZABLE:
                raise ValueError(f"generalize is defined for date, zip and age only, not {kind}")
        for column, rule in self.columns.items():
            if rule.action == "generalize" and rule.kind is not None and rule.kind not in GENERALIZABLE:
                raise ValueError(f"column {column!r}: generalize is defined for date, zip and age only")
        return self

    def action_for(self, kind: IdentifierKind) -> Action:
        return self.defaults.get(kind, SAFE_HARBOR_DEFAULTS[kind])


class ColumnAction(BaseModel):
    """What was done to one input column; reported back to the uploader and stored with the dataset."""

    model_config = ConfigDict(frozen=True)

    column: str
    detected_kind: IdentifierKind | None
    detected_by: DetectedBy | None
    action: ReportedAction
    details: dict[str, Any] = Field(default_factory=dict)


def load_policy(raw: str | bytes | Mapping[str, Any] | None) -> Policy:
    """Parse the policy sent with an upload (JSON text or a mapping); ``None`` means Safe Harbor defaults."""
    if raw is None or (isinstance(raw, str | bytes) and not raw.strip()):
        return Policy()
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
        return Policy.model_validate(data)
    except json.JSONDecodeError as exc:
        raise Invalid(f"policy is not valid JSON (line {exc.lineno})", code="bad_policy") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise Invalid(f"invalid policy: {problems}", code="bad_policy") from None


def hidden_value_columns(actions: Iterable[ColumnAction]) -> set[str]:
    """Output columns whose values must not appear in statistics: identifier-like (pseudonyms, kept or
    generalised identifiers), free text, and columns in which identifiers were found and redacted."""
    return {
        a.column
        for a in actions
        if a.action in ("pseudonymize", "generalize", "scrub", "redact")
        or (a.action == "keep" and a.detected_kind is not None)
    }


def training_exclusions(actions: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Stored columns a model must never be trained on, each with the reason given in the results:
    identifiers (pseudonyms, identifiers kept by policy), free text, and text that held identifiers."""
    out: dict[str, str] = {}
    for a in actions:
        action, kind, column = a.get("action"), a.get("detected_kind"), str(a.get("column"))
        if action == "pseudonymize":
            out[column] = f"identifier ({kind}), pseudonymised: a model must not learn identifiers"
        elif action == "keep" and kind is not None:
            out[column] = f"identifier ({kind}) kept by policy: never a feature"
        elif action == "scrub":
            out[column] = "free text: its values would be copied into the model"
        elif action == "redact":
            out[column] = "text in which identifiers were found: never a feature"
    return out


def _canonical(value: Any) -> bytes:
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        text = str(int(value))
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    else:
        text = str(value).strip()
    return text.encode("utf-8")


def pseudonym(value: Any, *, key: bytes, hex_chars: int = 16) -> str:
    """Keyed HMAC-SHA256 of the value's canonical text: stable per key, unlinkable without it."""
    return hmac.digest(key, _PSEUDONYM_CONTEXT + _canonical(_py(value)), "sha256").hex()[:hex_chars]


def _py(value: Any) -> Any:
    """numpy number -> Python number, so the isinstance checks behave."""
    return value.item() if isinstance(value, np.number | np.bool_) else value


def _is_null(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _map_values(s: pd.Series, fn: Callable[[Any], Any]) -> list[Any]:
    """``fn`` applied once per distinct non-null value (columns repeat a lot); nulls give None."""
    memo: dict[tuple[type, Any], Any] = {}
    out: list[Any] = []
    for value, null in zip(s.astype(object).tolist(), s.isna().tolist(), strict=True):
        if null:
            out.append(None)
            continue
        value = _py(value)
        slot = (type(value), value)
        if slot not in memo:
            memo[slot] = fn(value)
        out.append(memo[slot])
    return out


def _pseudonymize(s: pd.Series, key: bytes, hex_chars: int) -> pd.Series:
    import pandas as pd

    values = _map_values(s, lambda v: pseudonym(v, key=key, hex_chars=hex_chars))
    return pd.Series(values, index=s.index, name=s.name, dtype=object)


def _year_of(value: Any) -> int | None:
    import pandas as pd

    if isinstance(value, datetime | date):
        return value.year
    if isinstance(value, int | float) and not isinstance(value, bool):
        ok = math.isfinite(value) and float(value).is_integer() and 1800 <= value <= 2200
        return int(value) if ok else None
    if isinstance(value, str):
        if m := _YEAR.search(value):
            return int(m.group(1))
        # two-digit years and compact forms: let pandas (dateutil) have a go
        ts = pd.to_datetime(value, format="mixed", errors="coerce")
        return None if _is_null(ts) else int(ts.year)
    return None


def _generalize_date(s: pd.Series, *, birth: bool, reference_year: int) -> tuple[pd.Series, dict[str, Any]]:
    import pandas as pd

    if s.dtype.kind == "M":
        years = s.dt.year.astype("Int64")
    else:
        years = pd.Series(_map_values(s, _year_of), index=s.index, name=s.name, dtype="Int64")
    details: dict[str, Any] = {"to": "year", "cleared": int(years.isna().sum() - s.isna().sum())}
    if birth:
        limit = reference_year - 90
        old = years.notna() & (years <= limit)
        years = years.mask(old, limit)
        details.update(birth_years_grouped_at=limit, grouped=int(old.sum()))
    return years, details


def _zip3(value: Any) -> str | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 999_999_999:
        digits = f"{value:05d}" if value <= 99_999 else f"{value:09d}"
    elif isinstance(value, str) and (m := _ZIP.fullmatch(value)):
        digits = m.group(1).zfill(5) if len(m.group(1)) == 4 else m.group(1)
    else:
        return None
    return digits[:3]


def _generalize_zip(s: pd.Series) -> tuple[pd.Series, dict[str, Any]]:
    import pandas as pd

    prefixes = _map_values(s, _zip3)
    restricted = sum(p in RESTRICTED_ZIP3 for p in prefixes)
    out = [("000" if p in RESTRICTED_ZIP3 else p) for p in prefixes]
    cleared = sum(p is None for p in prefixes) - int(s.isna().sum())
    details = {"to": "3-digit prefix", "restricted_to_000": restricted, "cleared": cleared}
    return pd.Series(out, index=s.index, name=s.name, dtype=object), details


def _generalize_age(s: pd.Series, *, factor: int) -> tuple[pd.Series, dict[str, Any]]:
    import pandas as pd

    cap = 90 * factor
    values = s.astype(object).tolist()
    non_null = s.dropna().astype(object).tolist()
    if all(
        isinstance(_py(v), int | float) or (isinstance(v, str) and _NUMBER.fullmatch(v)) for v in non_null
    ):
        nums = pd.to_numeric(pd.Series(values, index=s.index, name=s.name, dtype=object), errors="coerce")
        over = nums.notna() & (nums >= cap)
        out = nums.mask(over, cap)
        if out.notna().all() and (out.dropna() % 1 == 0).all():
            out = out.astype("int64")
        return out, {"capped_at": cap, "capped": int(over.sum())}
    capped = 0
    texts: list[Any] = []
    for v in values:  # "85-89", "90+", "unknown": any number at or over the cap makes it "90+"
        nums_in = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", str(v))] if not _is_null(v) else []
        if any(n >= cap for n in nums_in):
            texts.append(f"{cap}+")
            capped += 1
        else:
            texts.append(v)
    return pd.Series(texts, index=s.index, name=s.name, dtype=object), {"capped_at": cap, "capped": capped}


def _redact(s: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """Replace identifiers found inside text cells; counts are cells touched per kind."""
    text = text_values(s)
    if text.empty:
        return s, {}
    counts = dict.fromkeys(TEXT_REDACTIONS, 0)
    changed: dict[Any, str] = {}
    for index, value in zip(text.index, text.tolist(), strict=True):
        new = value
        for kind, pattern in TEXT_REDACTIONS.items():
            new, hits = pattern.subn(f"[REDACTED-{kind.upper()}]", new)
            if hits:
                counts[kind] += 1
        if new != value:
            changed[index] = new
    if not changed:
        return s, {}
    out = s.astype(object).copy()
    out.loc[list(changed)] = list(changed.values())
    return out, {kind: n for kind, n in counts.items() if n}


def _detect(column: str, s: pd.Series) -> tuple[IdentifierKind | None, DetectedBy | None, dict[str, Any]]:
    from bastion.data.freetext import NAME_COLUMN_SHARE, name_share

    kind = kind_from_name(column)
    if kind is not None:
        return kind, "name", {"reason": f"the column's name marks it as {kind}"}
    found = kind_from_values(column, s)
    if found is not None:
        share = round(found[1], 2)
        return (
            found[0],
            "values",
            {"matched_share": share, "reason": f"{share:.0%} of sampled values are {found[0]}"},
        )
    share = name_share(s)
    if share >= NAME_COLUMN_SHARE:
        return (
            "name",
            "values",
            {
                "matched_share": round(share, 2),
                "reason": f"{share:.0%} of sampled values are person names (name dictionaries and context)",
            },
        )
    return None, None, {}


def _checked_names(df: pd.DataFrame, policy: Policy, hmac_key: bytes) -> list[str]:
    """The column names, once the key, the names and the policy's columns are checked."""
    if len(hmac_key) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise Invalid("the table names a column twice", code="duplicate_column")
    unknown = sorted(set(policy.columns) - set(names))
    if unknown:
        listed = ", ".join(repr(c[:64]) for c in unknown[:10])
        raise Invalid(f"policy names columns that are not in the data: {listed}", code="bad_policy")
    return names


def _no_identifier(out: pd.DataFrame, column: str, s: pd.Series, known: Any, policy: Policy) -> ColumnAction:
    """A column with no identifier kind: scrubbed if free text, identifiers inside cells redacted."""
    profile = text_profile(s)
    if profile is not None and policy.redact_free_text:
        out[column], counts = scrub_column(s, known)
        reason = f"free text ({profile['why']}): every cell scrubbed; never a model feature"
        details = {"column_class": "free_text", **profile, "scrubbed": counts, "reason": reason}
        return ColumnAction(
            column=column, detected_kind=None, detected_by="values", action="scrub", details=details
        )
    if policy.redact_free_text:
        out[column], redacted = _redact(s)
        if redacted:
            reason = "identifiers found inside text cells were replaced"
            return ColumnAction(
                column=column,
                detected_kind=None,
                detected_by="values",
                action="redact",
                details={"redacted_cells": redacted, "reason": reason},
            )
    reason = "no identifier by name or values, not free text"
    if profile is not None:
        reason = "free text left as it is: the policy turned redact_free_text off"
    return ColumnAction(
        column=column, detected_kind=None, detected_by=None, action="none", details={"reason": reason}
    )


def _generalize(
    s: pd.Series, column: str, kind: str | None, reference_year: int
) -> tuple[pd.Series, dict[str, Any]]:
    """A date, zip or age column coarsened (the ``generalize`` action) and what was done."""
    if kind == "date":
        return _generalize_date(s, birth=is_birth_column(column), reference_year=reference_year)
    if kind == "zip":
        return _generalize_zip(s)
    if kind == "age":
        return _generalize_age(s, factor=age_unit_factor(column))
    raise Invalid(
        f"column {column[:64]!r}: generalize is defined for date, zip and age only;"
        " give the column's kind in the policy",
        code="bad_policy",
    )


def deidentify(
    df: pd.DataFrame, policy: Policy, *, hmac_key: bytes
) -> tuple[pd.DataFrame, list[ColumnAction]]:
    """Apply ``policy`` to every column of ``df`` (which is not modified); report one action per column."""
    names = _checked_names(df, policy, hmac_key)
    reference_year = policy.reference_year or aware_utcnow().year
    out = df.copy()
    out.columns = names
    actions: list[ColumnAction] = []
    detected = {column: _detect(column, out[column]) for column in names}
    identifier_values = {
        column: (str(kind), out[column])
        for column, (kind, _by, _d) in detected.items()
        if kind is not None
        and kind not in GENERALIZABLE
        and (policy.columns.get(column) is None or policy.columns[column].action != "keep")
    }
    known = known_values(identifier_values)
    for column in names:
        s = out[column]
        kind, by, details = detected[column]
        details = dict(details)
        rule = policy.columns.get(column)
        action: Action | None
        if rule is not None:
            if rule.kind is not None:
                kind, by = rule.kind, "policy"
            action, details["source"] = rule.action, "column override"
            by = by or "policy"
        elif kind is not None:
            action = policy.action_for(kind)
            details["source"] = "policy default" if kind in policy.defaults else "Safe Harbor default"
        else:
            action = None

        if action is None:
            actions.append(_no_identifier(out, column, s, known, policy))
            continue
        if action == "drop":
            out = out.drop(columns=[column])
        elif action == "pseudonymize":
            out[column] = _pseudonymize(s, hmac_key, policy.pseudonym_hex_chars)
            details.update(algorithm="HMAC-SHA256", hex_chars=policy.pseudonym_hex_chars)
        elif action == "generalize":
            out[column], extra = _generalize(s, column, kind, reference_year)
            details.update(extra)
        elif kind is not None:  # keep of an identifier: only ever on the policy's explicit word
            details["safe_harbor"] = False
        else:
            details["free_text_redaction"] = "skipped"
        if rule is not None:
            details["reason"] = f"the policy says {action} for this column"
        details.setdefault("reason", f"{action}: Safe Harbor default for {kind}")
        actions.append(
            ColumnAction(column=column, detected_kind=kind, detected_by=by, action=action, details=details)
        )
    return out, actions
