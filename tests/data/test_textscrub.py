"""Free-text PHI scrubber: every kind, the traps that are not PHI, surrogates, and recall on 200 notes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bastion.data.clinical_notes import UNLISTED_FIRST, UNLISTED_LAST, generate_notes, score
from bastion.data.textscrub import PHI_KINDS, TextPolicy, find_phi, scrub_text
from bastion.data.textscrub_rules import name_lists
from bastion.errors import Invalid

KEY = b"k" * 32

CASES = [
    ("Seen by Dr. Sarah K. Whitfield today.", "NAME", "Sarah K. Whitfield"),
    ("Discussed with daughter Yevgenia at bedside.", "NAME", "Yevgenia"),
    ("Jennifer Lopez reports chest pain.", "NAME", "Jennifer Lopez"),
    ("Mireille Oyelaran (nephew) will visit.", "NAME", "Mireille Oyelaran"),
    ("Admitted on 03/14/2021 with sepsis.", "DATE", "03/14/2021"),
    ("Surgery on March 3, 2019 went well.", "DATE", "March 3, 2019"),
    ("Follow-up since 4/2 without events.", "DATE", "4/2"),
    ("Echo done 2020-11-05.", "DATE", "2020-11-05"),
    ("A 93-year-old man with dyspnea.", "AGE", "93"),
    ("She is a 92 y.o.", "AGE", "92"),
    ("She resides at 12 Oak St in Boise now.", "ADDRESS", "Boise"),
    ("Call (217) 555-0143 for results.", "PHONE", "(217) 555-0143"),
    ("Fax: 217-555-0199 attn records.", "FAX", "217-555-0199"),
    ("Mail j.doe@mail.example.com today.", "EMAIL", "j.doe@mail.example.com"),
    ("Lives at 42 Maple Grove Road with wife.", "ADDRESS", "42 Maple Grove Road"),
    ("Moved from Springfield, IL 62704 last year.", "ZIP", "62704"),
    ("SSN 123-45-6789 on file.", "SSN", "123-45-6789"),
    ("MRN: 4429183 confirmed.", "MRN", "4429183"),
    ("Billing account #483396947 closed.", "ACCOUNT", "483396947"),
    ("See https://portal.example.org/u/1 for labs.", "URL", "https://portal.example.org/u/1"),
    ("Connected from 192.168.10.4.", "IP", "192.168.10.4"),
    ("Pacemaker serial number PM4471-22X checked.", "DEVICE", "PM4471-22X"),
    ("Driver's license D1234567 verified.", "LICENSE", "D1234567"),
]


@pytest.mark.parametrize(("text", "kind", "value"), CASES)
def test_each_kind_is_found_and_replaced(text: str, kind: str, value: str) -> None:
    spans = [(text[s.start : s.end], s.kind) for s in find_phi(text)]
    assert (value, kind) in spans
    result = scrub_text(text)
    assert value not in result.text
    assert f"[{kind}]" in result.text
    assert result.counts_by_kind[kind] >= 1


def test_every_kind_has_a_case() -> None:
    assert {kind for _, kind, _ in CASES} == set(PHI_KINDS)


@pytest.mark.parametrize(
    "text",
    [
        "History of Parkinson's disease; Foley catheter placed.",
        "BP 132/84, pain 6/10, quit smoking in 2019.",
        "Her 45-year-old son is the caregiver; she may need therapy.",
        "Positive Murphy sign on exam.",
        "Continue metformin 500 mg twice daily.",
    ],
)
def test_clinical_text_without_phi_is_left_alone(text: str) -> None:
    result = scrub_text(text)
    assert result.text == text
    assert result.total == 0


def test_counts_cover_every_kind_and_match_placeholders() -> None:
    result = scrub_text("Dr. Smith saw Mr. Jones on 1/2/2020; call 555-123-4567.")
    assert set(result.counts_by_kind) == set(PHI_KINDS)
    assert result.counts_by_kind["NAME"] == 2
    assert result.counts_by_kind["DATE"] == 1
    assert result.text.count("[NAME]") == 2


def test_surrogates_are_consistent_per_key_and_differ_across_keys() -> None:
    text = "Mr. John Oyelaran, MRN 4429183, seen 03/14/2021. Later John Oyelaran called."
    a = scrub_text(text, TextPolicy(mode="surrogate", key=KEY))
    b = scrub_text(text, TextPolicy(mode="surrogate", key=KEY))
    c = scrub_text(text, TextPolicy(mode="surrogate", key=b"o" * 32))
    assert a.text == b.text
    assert a.text != c.text
    for secret in ("Oyelaran", "4429183", "03/14/2021"):
        assert secret not in a.text
    first, second = a.text.split("Later ")
    assert second.split(" called")[0] in first  # the same person keeps the same stand-in
    assert "[" not in a.text


def test_surrogate_dates_keep_intervals() -> None:
    result = scrub_text("Seen 03/10/2021 and 03/17/2021.", TextPolicy(mode="surrogate", key=KEY))
    from datetime import datetime

    days = [datetime.strptime(w.strip("."), "%m/%d/%Y") for w in result.text.split() if "/" in w]
    assert (days[1] - days[0]).days == 7


def test_policy_keep_and_validation() -> None:
    result = scrub_text("Seen 03/10/2021 by Dr. Smith.", TextPolicy(keep=frozenset({"DATE"})))
    assert "03/10/2021" in result.text and "[NAME]" in result.text
    assert result.counts_by_kind["DATE"] == 0
    with pytest.raises(Invalid):
        TextPolicy(mode="surrogate")
    with pytest.raises(ValidationError):
        TextPolicy(mode="surrogate", key=b"short")


def test_unlisted_names_really_are_unlisted() -> None:
    lists = name_lists()
    assert not any(lists.is_name(n) for n in UNLISTED_FIRST)
    assert not any(lists.is_name(n.split("-")[0]) for n in UNLISTED_LAST)


@pytest.mark.parametrize("style", ["plain", "varied"])
def test_recall_on_200_synthetic_notes(style: str) -> None:
    notes = generate_notes(200, seed=7, style=style)
    assert len(notes) == 200
    scores = score(notes)
    for kind in PHI_KINDS:
        assert scores[kind].planted >= 200, kind
        assert scores[kind].recall >= 0.98, (kind, scores[kind])
        assert scores[kind].precision >= 0.9, (kind, scores[kind])
    # The scrubbed notes keep none of the planted values.
    for note in notes[:20]:
        scrubbed = scrub_text(note.text).text
        for start, end, _ in note.phi:
            value = note.text[start:end]
            if len(value) > 4:
                assert value not in scrubbed
