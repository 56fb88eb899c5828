"""The free-text scrubber stays linear on crafted cells (a regex DoS would tie up a server core).

Every rule of ``textscrub_rules`` repeats some character class; each family below is fed a long run
of exactly what its patterns repeat. The guard is relative, never a wall-clock limit: the crafted
text may take at most ``RATIO`` times as long as scrubbing an equally long benign note text in the
same run (the old quadratic ``_URL`` took ~75x at 30 KB; linear rules stay within a few x).
"""

from __future__ import annotations

import time

import pytest

from bastion.data.clinical_notes import generate_notes
from bastion.data.textscrub import scrub_text

SIZE = 30_000
RATIO = 10.0

# family -> a run of the characters its patterns repeat
ADVERSARIAL: dict[str, str] = {
    "url_email_domain_labels": "a." * (SIZE // 2) + "@x",
    "url_hyphen_labels": "a-" * (SIZE // 2),
    "email_local_part": "a" * SIZE + "@",
    "labelled_id_repeated_labels": "mrn " * (SIZE // 4),
    "labelled_id_glue": "MRN " + "no " * (SIZE // 3),
    "labelled_id_value_without_digit": "MRN " + "ab-" * (SIZE // 3),
    "whitespace_after_label": "MRN" + " " * SIZE + "!",
    "whitespace_in_age": "92" + " " * SIZE + "x",
    "capitalised_run": "A" * SIZE,
    "capitalised_words_and_commas": "Aaa, " * (SIZE // 5),
    "title_and_initials": "Dr. " + "A. " * (SIZE // 3),
    "street_numbers_and_words": "1 " + "Aaa " * (SIZE // 4),
    "digits_and_separators": "1-" * (SIZE // 2),
    "digits_and_dots": "1." * (SIZE // 2),
    "digits_and_spaces": "1 " * (SIZE // 2),
    "ipv6_hex_groups": "a:" * (SIZE // 2) + "g",
    "apostrophe_words": "Ab'c" * (SIZE // 4),
    "month_names": "Jan " * (SIZE // 4),
    "name_context_words": "patient " * (SIZE // 8),
    "residence_context": "lives in " * (SIZE // 9),
    "state_abbreviations": "CA " * (SIZE // 3),
    "listed_names_and_commas": "john smith, " * (SIZE // 12),
    "url_prefixes": "www." * (SIZE // 4),
    "email_at_signs": "x@" * (SIZE // 2),
}


def _seconds(text: str) -> float:
    best = float("inf")
    for _ in range(2):  # the faster of two runs: a noisy neighbour slows one, rarely both
        start = time.perf_counter()
        out = scrub_text(text)
        best = min(best, time.perf_counter() - start)
    assert len(out.text) > 0
    return best


@pytest.fixture(scope="module")
def benign_seconds() -> float:
    text = ""
    for note in generate_notes(60, seed=7):
        text += note.text + "\n"
        if len(text) >= SIZE:
            break
    return _seconds(text[:SIZE])


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_crafted_run_costs_no_more_than_benign_text_of_its_size(family: str, benign_seconds: float) -> None:
    text = ADVERSARIAL[family]
    assert len(text) >= SIZE - 4
    assert _seconds(text) <= RATIO * benign_seconds + 0.05
