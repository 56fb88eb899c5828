"""Safe Harbor de-identification: detection, each action, the ZIP and age rules, and no leaks."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pandas as pd
import pytest
from pydantic import ValidationError

from bastion.data.deid import (
    RESTRICTED_ZIP3,
    ColumnAction,
    Policy,
    deidentify,
    hidden_value_columns,
    load_policy,
    pseudonym,
)
from bastion.data.identifiers import kind_from_name, kind_from_values
from bastion.data.ingest import describe, parse_table
from bastion.errors import ConfigError, Invalid

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def run(
    df: pd.DataFrame, policy: Policy | None = None, key: bytes = KEY
) -> tuple[pd.DataFrame, dict[str, ColumnAction]]:
    out, actions = deidentify(df, policy or Policy(), hmac_key=key)
    return out, {a.column: a for a in actions}


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("name", "name"),
        ("PatientName", "name"),
        ("first_name", "name"),
        ("Last Name", "name"),
        ("surname", "name"),
        ("patient", "name"),
        ("E-mail", "email"),
        ("email_address", "email"),
        ("phone", "phone"),
        ("HomePhone", "phone"),
        ("fax_number", "phone"),
        ("SSN", "ssn"),
        ("social_security_number", "ssn"),
        ("MRN", "mrn"),
        ("medical_record_number", "mrn"),
        ("PatientID", "mrn"),
        ("account_number", "account"),
        ("acct_no", "account"),
        ("insurance_id", "health_plan"),
        ("street_address", "address"),
        ("Address Line 1", "address"),
        ("city", "geo"),
        ("county", "geo"),
        ("latitude", "geo"),
        ("zip", "zip"),
        ("ZIP Code", "zip"),
        ("postal_code", "zip"),
        ("DOB", "date"),
        ("date_of_birth", "date"),
        ("admission_date", "date"),
        ("discharge", "date"),
        ("DeathDate", "date"),
        ("created_at", "date"),
        ("ip_address", "ip"),
        ("website", "url"),
        ("drivers_license", "license"),
        ("license_plate", "vehicle"),
        ("VIN", "vehicle"),
        ("device_serial", "device"),
        ("age", "age"),
        ("age_at_admission", "age"),
        ("photo", "photo"),
        ("fingerprint", "biometric"),
        ("passport_no", "license"),
        ("id", "other_id"),
        ("SubjectID", "other_id"),
    ],
)
def test_detection_by_name(column: str, kind: str) -> None:
    assert kind_from_name(column) == kind


@pytest.mark.parametrize(
    "column",
    [
        "stage",
        "page_count",
        "dosage",
        "diagnosis",
        "drug_name",
        "discharge_disposition",
        "first_visit",
        "cell_type",
        "state",
        "heart_rate",
        "weight_kg",
        "outcome",
    ],
)
def test_clinical_columns_are_not_identifiers_by_name(column: str) -> None:
    assert kind_from_name(column) is None


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["a.b@example.org", "c@d.com", "x_y@z.co.uk"], "email"),
        (["123-45-6789", "987-65-4321", "111 22 3333"], "ssn"),
        (["(555) 123-4567", "555.987.6543", "+1 555 222 3333"], "phone"),
        (["10.0.0.1", "192.168.1.20", "2001:db8::1"], "ip"),
        (["https://example.org/p/1", "http://x.io", "www.site.com/a"], "url"),
        (["02139", "94103-1234", "10001"], "zip"),
        (["2020-01-05", "03/04/2019", "Jan 5, 2021", "5 March 2018"], "date"),
        (["12 Main Street", "400 Oak Ave.", "7B Elm Rd, Springfield"], "address"),
        (["MRN-001234", "MRN 998877", "MRN#5551"], "mrn"),
    ],
)
def test_detection_by_values_under_a_neutral_name(values: list[str], kind: str) -> None:
    assert kind_from_values("col7", pd.Series(values))[0] == kind  # type: ignore[index]


def test_datetime_dtype_is_a_date_by_values() -> None:
    s = pd.Series(pd.to_datetime(["2020-01-05", "2021-02-03"]))
    assert kind_from_values("t", s) == ("date", 1.0)


def test_value_detection_needs_a_majority() -> None:
    assert kind_from_values("col", pd.Series(["a@b.com", "x", "y", "z"])) is None
    assert kind_from_values("col", pd.Series(["fever", "cough", "rash"])) is None
    assert kind_from_values("col", pd.Series([12345, 23456])) is None  # numbers are not value-detected


def test_person_names_by_values_only_when_the_column_name_hints() -> None:
    names = pd.Series(["John Smith", "Mary-Ann O'Neil", "Doe, Jane", "Ana M. Lopez"])
    assert kind_from_values("contact", names)[0] == "name"  # type: ignore[index]
    assert kind_from_values("referring_physician", names)[0] == "name"  # type: ignore[index]
    assert kind_from_values("col3", names) is None  # documented limit: no name hint, no detection
    assert kind_from_values("drug_name", pd.Series(["Aspirin", "Ibuprofen"])) is None


def test_report_says_how_each_column_was_detected() -> None:
    df = pd.DataFrame({"email": ["a@b.com"], "contact": ["c@d.org"], "score": [1]})
    _, report = run(df)
    assert (report["email"].detected_kind, report["email"].detected_by) == ("email", "name")
    assert (report["contact"].detected_kind, report["contact"].detected_by) == ("email", "values")
    assert (report["score"].detected_kind, report["score"].action) == (None, "none")


# ---------------------------------------------------------------- actions


def test_safe_harbor_defaults() -> None:
    df = pd.DataFrame(
        {
            "name": ["John Smith"],
            "email": ["j@x.org"],
            "phone": ["555-123-4567"],
            "ssn": ["123-45-6789"],
            "address": ["1 Main St"],
            "ip": ["10.0.0.1"],
            "url": ["http://x.org"],
            "mrn": ["M1"],
            "account_number": ["A9"],
            "zip": ["02139"],
            "visit_date": ["2020-05-06"],
            "age": [95],
            "score": [0.5],
        }
    )
    out, report = run(df)
    dropped = ["name", "email", "phone", "ssn", "address", "ip", "url"]
    assert all(report[c].action == "drop" for c in dropped)
    assert not set(dropped) & set(out.columns)
    assert report["mrn"].action == report["account_number"].action == "pseudonymize"
    assert {report[c].action for c in ("zip", "visit_date", "age")} == {"generalize"}
    assert out.loc[0, "zip"] == "021"
    assert out.loc[0, "visit_date"] == 2020
    assert out.loc[0, "age"] == 90
    assert out.loc[0, "score"] == 0.5
    assert all(report[c].details["source"] == "Safe Harbor default" for c in dropped)


def test_policy_defaults_and_column_overrides() -> None:
    df = pd.DataFrame({"email": ["a@b.com"], "ssn": ["123-45-6789"], "notes": ["fine"], "code": ["x"]})
    policy = Policy(defaults={"email": "pseudonymize"}, columns={"ssn": "keep", "notes": {"action": "drop"}})
    out, report = run(df, policy)
    assert report["email"].action == "pseudonymize" and report["email"].details["source"] == "policy default"
    assert out.loc[0, "email"] == pseudonym("a@b.com", key=KEY)
    assert report["notes"].action == "drop" and report["notes"].detected_by == "policy"
    assert "notes" not in out.columns
    assert out.loc[0, "code"] == "x"


def test_keep_of_an_identifier_is_explicit_and_reported() -> None:
    df = pd.DataFrame({"ssn": ["123-45-6789"]})
    out, report = run(df, Policy(columns={"ssn": "keep"}))
    assert out.loc[0, "ssn"] == "123-45-6789"
    assert report["ssn"].action == "keep"
    assert report["ssn"].details == {
        "source": "column override",
        "safe_harbor": False,
        "reason": "the policy says keep for this column",
    }
    _, report = run(df, Policy(defaults={"ssn": "keep"}))
    assert report["ssn"].details["source"] == "policy default"
    assert report["ssn"].details["safe_harbor"] is False


def test_override_can_declare_a_missed_kind() -> None:
    df = pd.DataFrame({"when": ["seen 2019"], "loc": ["02139"]})
    out, report = run(df, Policy(columns={"when": {"action": "generalize", "kind": "date"}}))
    assert out.loc[0, "when"] == 2019
    assert (report["when"].detected_kind, report["when"].detected_by) == ("date", "policy")


def test_generalize_without_a_generalizable_kind_is_refused() -> None:
    with pytest.raises(ValidationError):
        Policy(defaults={"ssn": "generalize"})
    with pytest.raises(ValidationError):
        Policy(columns={"x": {"action": "generalize", "kind": "email"}})
    with pytest.raises(Invalid) as info:
        run(pd.DataFrame({"x": ["a"]}), Policy(columns={"x": "generalize"}))
    assert info.value.code == "bad_policy"


def test_policy_rejects_unknown_fields_actions_and_columns() -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate({"default": {}})
    with pytest.raises(ValidationError):
        Policy.model_validate({"defaults": {"ssn": "hide"}})
    with pytest.raises(ValidationError):
        Policy.model_validate({"defaults": {"shoe_size": "drop"}})
    with pytest.raises(Invalid) as info:
        run(pd.DataFrame({"a": [1]}), Policy(columns={"nmae": "drop"}))
    assert info.value.code == "bad_policy" and "nmae" in info.value.message


def test_load_policy() -> None:
    assert load_policy(None) == Policy()
    assert load_policy("") == Policy()
    policy = load_policy(b'{"defaults": {"mrn": "drop"}, "columns": {"notes": "drop"}}')
    assert policy.action_for("mrn") == "drop" and policy.columns["notes"].action == "drop"
    for bad in ("{", '{"defaults": {"mrn": "burn"}}', '{"extra": 1}'):
        with pytest.raises(Invalid) as info:
            load_policy(bad)
        assert info.value.code == "bad_policy"


# ---------------------------------------------------------------- pseudonyms


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    df = pd.DataFrame({"mrn": ["M001", "M002", "M001", None]})
    a, _ = run(df)
    b, _ = run(df)
    c, _ = run(df, key=OTHER_KEY)
    assert a["mrn"].tolist() == b["mrn"].tolist()
    assert a.loc[0, "mrn"] == a.loc[2, "mrn"] != a.loc[1, "mrn"]
    assert pd.isna(a.loc[3, "mrn"])
    assert c.loc[0, "mrn"] != a.loc[0, "mrn"]
    assert len(a.loc[0, "mrn"]) == 16 and int(a.loc[0, "mrn"], 16) >= 0
    assert "M001" not in a["mrn"].tolist()


def test_numeric_and_text_ids_share_a_pseudonym() -> None:
    assert pseudonym(12345, key=KEY) == pseudonym("12345", key=KEY) == pseudonym(12345.0, key=KEY)
    assert len(pseudonym("x", key=KEY, hex_chars=32)) == 32


def test_short_key_is_refused() -> None:
    with pytest.raises(ConfigError):
        deidentify(pd.DataFrame({"a": [1]}), Policy(), hmac_key=b"short")


# ---------------------------------------------------------------- generalisation


def test_zip_to_three_digits_with_restricted_prefixes() -> None:
    zips = ["02139", "94103-1234", "03601", "05901", "89301-0001", "K1A 0B1", None]
    out, report = run(pd.DataFrame({"zip": zips}))
    assert out["zip"].tolist() == ["021", "941", "000", "000", "000", None, None]
    assert report["zip"].details["restricted_to_000"] == 3
    assert report["zip"].details["cleared"] == 1


def test_every_restricted_prefix_becomes_000() -> None:
    assert len(RESTRICTED_ZIP3) == 17
    out, _ = run(pd.DataFrame({"zip": [p + "42" for p in sorted(RESTRICTED_ZIP3)] + ["10001"]}))
    assert out["zip"].tolist() == ["000"] * 17 + ["100"]


def test_numeric_zip_that_lost_its_leading_zero() -> None:
    df = parse_table(b"zip,x\n02139,1\n03601,2\n")
    assert df["zip"].dtype.kind == "i"  # pandas read "02139" as 2139
    out, _ = run(df)
    assert out["zip"].tolist() == ["021", "000"]


def test_ages_over_89_become_90() -> None:
    out, report = run(pd.DataFrame({"age": [34, 89, 90, 104, None]}))
    assert out["age"].tolist()[:4] == [34, 89, 90, 90]
    assert pd.isna(out["age"].iloc[4])
    assert report["age"].details["capped"] == 2
    out, _ = run(pd.DataFrame({"age_months": [12, 1200]}))
    assert out["age_months"].tolist() == [12, 1080]
    out, _ = run(pd.DataFrame({"age_group": ["80-89", "90-99", "unknown"]}))
    assert out["age_group"].tolist() == ["80-89", "90+", "unknown"]


def test_dates_become_years_from_any_common_format() -> None:
    values = ["2020-01-05", "03/04/2019", "Jan 5, 2021", "5/6/18", "20170809", "2016-02-03T10:11:12Z", "soon"]
    out, report = run(pd.DataFrame({"admission_date": values}))
    assert out["admission_date"].tolist()[:6] == [2020, 2019, 2021, 2018, 2017, 2016]
    assert pd.isna(out["admission_date"].iloc[6])
    assert report["admission_date"].details["cleared"] == 1
    out, _ = run(pd.DataFrame({"ts": pd.to_datetime(["2001-02-03 04:05", None])}))
    assert out["ts"].iloc[0] == 2001 and pd.isna(out["ts"].iloc[1])


def test_birth_years_that_reveal_an_age_over_89_are_grouped() -> None:
    df = pd.DataFrame({"dob": ["1930-05-01", "1935-12-31", "1936-01-01", "1980-07-07"]})
    out, report = run(df, Policy(reference_year=2026))
    assert out["dob"].tolist() == [1936, 1936, 1936, 1980]
    assert report["dob"].details["birth_years_grouped_at"] == 1936
    out, _ = run(pd.DataFrame({"death_date": ["1930-05-01"]}), Policy(reference_year=2026))
    assert out["death_date"].tolist() == [1930]


def test_default_reference_year_is_this_year() -> None:
    out, report = run(pd.DataFrame({"birth_date": ["1900-01-01"]}))
    assert report["birth_date"].details["birth_years_grouped_at"] == datetime.now().year - 90
    assert out["birth_date"].iloc[0] == datetime.now().year - 90


# ---------------------------------------------------------------- free text


def test_free_text_columns_go_through_the_shared_scrubber() -> None:
    notes = [
        "Pt SSN 123-45-6789, call (555) 123-4567 or mail john.doe@example.org",
        "see https://portal.example.org/p/77 from 10.1.2.3, MRN: 00123456",
        "stable, no change",
    ]
    out, report = run(pd.DataFrame({"notes": notes}))
    text = " ".join(out["notes"])
    for leaked in (
        "123-45-6789",
        "123-4567",
        "john.doe@example.org",
        "portal.example.org",
        "10.1.2.3",
        "00123456",
    ):
        assert leaked not in text
    assert "[SSN]" in text and "[EMAIL]" in text and "[PHONE]" in text
    assert out["notes"].iloc[2] == "stable, no change"
    assert report["notes"].action == "scrub" and report["notes"].details["column_class"] == "free_text"
    assert report["notes"].details["scrubbed"]["SSN"] == 1
    assert "free text" in report["notes"].details["reason"]


def test_short_text_cells_keep_the_pattern_redaction() -> None:
    out, report = run(pd.DataFrame({"contact": ["123-45-6789", "none", "none"]}))
    assert report["contact"].action in ("drop", "redact")
    assert "123-45-6789" not in " ".join(map(str, out.get("contact", [])))


def test_redaction_patterns_stay_linear_on_adversarial_cells() -> None:
    # An unbounded r"\s*[#:]?\s*" after "MRN" made the first cell quadratic (74 s at 32K spaces).
    cells = ["MRN" + " " * 100_000 + "!", "a" * 30_000 + "@", "1 " * 15_000, "a." * 15_000 + "@x"]
    out, _ = run(pd.DataFrame({"notes": cells}))
    assert out["notes"].str.len().tolist() == [len(c) for c in cells]


def test_redaction_can_be_switched_off_per_policy_or_column() -> None:
    df = pd.DataFrame({"notes": ["SSN 123-45-6789"]})
    out, report = run(df, Policy(redact_free_text=False))
    assert out.loc[0, "notes"] == "SSN 123-45-6789" and report["notes"].action == "none"
    out, report = run(df, Policy(columns={"notes": "keep"}))
    assert out.loc[0, "notes"] == "SSN 123-45-6789" and report["notes"].action == "keep"
    assert report["notes"].details["free_text_redaction"] == "skipped"


def test_input_frame_is_not_modified() -> None:
    df = pd.DataFrame({"ssn": ["123-45-6789"], "notes": ["x 123-45-6789"]})
    run(df)
    assert df.to_dict("list") == {"ssn": ["123-45-6789"], "notes": ["x 123-45-6789"]}


# ---------------------------------------------------------------- end to end: no identifier survives

PEOPLE = [
    (
        "Johnathan Whitfield",
        "123-45-6789",
        "j.whitfield@example.org",
        "(617) 555-0142",
        "14 Beacon Street",
        "M-77812",
    ),
    ("Maribel Okonkwo", "234-56-7891", "maribel.ok@example.net", "617-555-0199", "300 Harbor Ave", "M-99031"),
    ("Teodoro Lindqvist", "345-67-8912", "tlindq@example.com", "+1 617 555 0107", "9 Elm Rd", "M-12007"),
]


def upload_csv() -> bytes:
    buf = io.StringIO()
    buf.write("Patient Name,SSN,Email,Phone,Home Address,MRN,DOB,Zip,Age,Diagnosis,Notes,contact_person\n")
    for i, (name, ssn, email, phone, addr, mrn) in enumerate(PEOPLE):
        first = name.split()[0]
        note = f"{first} reports pain; SSN {ssn}; reach at {email} / {phone}"
        buf.write(
            f'{name},{ssn},{email},"{phone}",{addr},{mrn},1931-0{i + 1}-15,0213{i},{88 + i},I10,"{note}",{name}\n'
        )
    return buf.getvalue().encode()


def test_deidentified_output_contains_no_known_identifier() -> None:
    df = parse_table(upload_csv())
    out, actions = deidentify(df, Policy(), hmac_key=KEY)
    stats = describe(out, hide_values=hidden_value_columns(actions))
    parquet = io.BytesIO()
    out.to_parquet(parquet)
    blobs = [
        out.to_csv(index=False).encode(),
        out.to_json(orient="records").encode(),
        parquet.getvalue(),
        json.dumps([a.model_dump() for a in actions]).encode(),
        json.dumps([s.model_dump() for s in stats]).encode(),
    ]
    needles: list[str] = []
    for name, ssn, email, phone, addr, mrn in PEOPLE:
        needles += [name, *name.split()[1:], ssn, ssn.replace("-", ""), email, phone, addr, mrn]
    needles += ["0555-01", "555-01"]  # phone fragments
    for blob in blobs:
        for needle in needles:
            assert needle.encode() not in blob, needle
    kept = set(out.columns)
    assert {"Diagnosis", "Notes", "MRN", "DOB", "Zip", "Age"} <= kept
    assert not {"Patient Name", "SSN", "Email", "Phone", "Home Address", "contact_person"} & kept
    # Free text: the table's own identifier values (the names of the name column, whole and word by
    # word) are replaced first, then the shared scrubber runs, so even given names no dictionary
    # knows ("Maribel", "Teodoro") go.
    notes = " ".join(out["Notes"])
    assert not {"Johnathan", "Maribel", "Teodoro"} & set(notes.split()) and "[NAME]" in notes
