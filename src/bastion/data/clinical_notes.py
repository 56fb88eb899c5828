"""Synthetic clinical notes with planted PHI of every kind, and where each piece was planted.

For the scrubber's tests and ``bench/deid_text.py``: recall and precision per kind need ground truth,
and real notes cannot ship. A quarter of the names come from a list the scrubber does not ship (so a
name the dictionaries miss shows up as a miss, not a pass), and every note carries traps that are
not PHI (eponyms, blood pressures, pain scores, years alone, ages under 90, words that are names).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bastion.data.textscrub_rules import PhiKind, name_lists

# Names the shipped lists do not contain (checked by a test): the scrubber must rely on context.
UNLISTED_FIRST = [
    "Oluwaseun",
    "Thandiwe",
    "Siddharth",
    "Anneliese",
    "Bartholomew",
    "Ignatius",
    "Yevgenia",
    "Fionnuala",
    "Kwabena",
    "Mireille",
]
UNLISTED_LAST = [
    "Oyelaran",
    "Kowalczyk",
    "Thorsdottir",
    "Abernathy-Singh",
    "Villaseñor",
    "Nakashima",
    "Okonkwo",
    "Brzezinski",
    "Quintanilla",
    "Haverbrook",
]
_STREETS = ["Maple", "Oak", "Cedar", "Elm", "Willow", "Lakeview", "Hillcrest", "Sunset", "Ridge", "Highland"]
_SUFFIX = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Blvd", "Court", "Way", "Place"]
_CITIES = [("Springfield", "IL"), ("Ann Arbor", "MI"), ("Fresno", "CA"), ("Burlington", "VT"),
           ("Salem", "Oregon"), ("Dayton", "OH"), ("Tulsa", "OK"), ("Boise", "ID")]  # fmt: skip
_MONTHS = "January February March April May June July August September October November December"

# Sentences without PHI, several of them traps for a careless scrubber.
_FILLER = [
    "History of Parkinson's disease and type 2 diabetes since 2015.",
    "Blood pressure 132/84, heart rate 78, temperature 37.1 C.",
    "Reports pain 6/10 in the lower back, worse with walking.",
    "A Foley catheter was placed without complication.",
    "Continue metformin 500 mg twice daily and lisinopril 10 mg daily.",
    "She may need physical therapy; will reassess next week.",
    "Hope is to discharge home with services in 2-3 days.",
    "Chest X-ray showed no acute cardiopulmonary process.",
    "Patient denies fever, chills, nausea or vomiting.",
    "Her 45-year-old son is the primary caregiver.",
    "Labs: WBC 7.2, Hgb 12.9, platelets 245, creatinine 1.1.",
    "Positive Murphy sign on exam; ultrasound ordered.",
    "Counselled on smoking cessation; quit in 2019.",
    "Grant application for home oxygen was discussed with social work.",
    "Plan: follow up in clinic in 4 weeks.",
]


@dataclass
class SyntheticNote:
    text: str
    phi: list[tuple[int, int, PhiKind]] = field(default_factory=list)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.phi: list[tuple[int, int, PhiKind]] = []

    def add(self, *pieces: str | tuple[PhiKind, str]) -> None:
        for piece in pieces:
            if isinstance(piece, tuple):
                kind, value = piece
                self.phi.append((self.pos, self.pos + len(value), kind))
                piece = value
            self.parts.append(piece)
            self.pos += len(piece)
        self.parts.append(" ")
        self.pos += 1


class _Values:
    def __init__(self, rng: random.Random) -> None:
        lists = name_lists()
        self.rng = rng
        self.first = sorted(n for n in lists.first if n.lower() not in lists.common)
        self.last = sorted(n for n in lists.last if n.lower() not in lists.common)

    def first_name(self) -> str:
        r = self.rng
        return r.choice(UNLISTED_FIRST) if r.random() < 0.25 else r.choice(self.first)

    def last_name(self) -> str:
        r = self.rng
        return r.choice(UNLISTED_LAST) if r.random() < 0.25 else r.choice(self.last)

    def digits(self, n: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(n))

    def date(self) -> str:
        r = self.rng
        y, m, d = r.randrange(1990, 2025), r.randrange(1, 13), r.randrange(1, 29)
        month = _MONTHS.split()[m - 1]
        return r.choice([
            f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}",
            f"{month} {d}, {y}", f"{month[:3]} {d} {y}", f"{d} {month} {y}", f"{d}-{month[:3]}-{y}",
            f"{month} {y}", f"{month} {d}",
        ])  # fmt: skip

    def phone(self) -> str:
        a, b, c = self.digits(3), self.digits(3), self.digits(4)
        a = str(self.rng.randrange(2, 10)) + a[1:]
        return self.rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}"])

    def ip(self) -> str:
        r = self.rng
        if r.random() < 0.2:
            return f"2001:db8:{r.randrange(65536):x}::{r.randrange(65536):x}"
        return ".".join(str(r.randrange(1, 255)) for _ in range(4))


def _varied(v: _Values, first: str, last: str) -> list[list[str | tuple[PhiKind, str]]]:
    """The same PHI kinds in other phrasings, written apart from the rules (a check on overfitting)."""
    r = v.rng
    month = _MONTHS.split()[r.randrange(12)]
    street = f"{r.randrange(1, 999)} {r.choice(_STREETS)} {r.choice(_SUFFIX)}"
    return [
        ["Her PCP, Dr ", ("NAME", v.last_name()), ", recommended follow-up."],
        ["Spoke to her son ", ("NAME", v.first_name()), " by phone."],
        ["Case reviewed with attending ", ("NAME", f"{v.first_name()} {v.last_name()}"), "."],
        ["DOB ", ("DATE", f"{r.randrange(1, 13)}/{r.randrange(1, 29)}/{r.randrange(1920, 1935)}"), "."],
        ["Last colonoscopy ", ("DATE", f"{month} {r.randrange(1, 29)}th"), "."],
        ["She is a ", ("AGE", str(r.randrange(90, 104))), " y.o. female."],
        ["Reachable on ", ("PHONE", v.phone()), " after 5 pm."],
        ["Fax # ", ("FAX", v.phone()), " for the cardiology office."],
        ["Results were emailed to ", ("EMAIL", f"{last.lower()}{v.digits(3)}@mail.example.net"), "."],
        ["She resides at ", ("ADDRESS", street), " in ", ("ADDRESS", r.choice(_CITIES)[0]), "."],
        ["Mailing ZIP code ", ("ZIP", v.digits(5)), "."],
        ["Social security number ", ("SSN", f"{r.randrange(100, 600)}-{r.randrange(10, 99)}-{v.digits(4)}"), "."],
        ["Medical record number: ", ("MRN", v.digits(8)), "."],
        ["Medicaid ID ", ("ACCOUNT", f"{r.choice('KLMN')}{v.digits(9)}"), " is active."],
        ["See www.", ("URL", f"www.clinic{v.digits(2)}.com/forms/{v.digits(4)}"[4:]), " for forms."],
        ["Remote login from ", ("IP", v.ip()), " noted."],
        ["Insulin pump serial ", ("DEVICE", f"{v.digits(4)}-{r.choice('ABC')}{v.digits(5)}"), " checked."],
        ["Prescriber DEA number ", ("LICENSE", f"{r.choice('ABFM')}{r.choice('ABCDEFG')}{v.digits(7)}"), "."],
    ]  # fmt: skip


def _note(v: _Values, style: str = "plain") -> SyntheticNote:
    r = v.rng
    b = _Builder()
    first, last = v.first_name(), v.last_name()
    age = str(r.randrange(90, 106))
    mrn = r.choice([v.digits(7), f"MR{v.digits(6)}", f"{v.digits(3)}-{v.digits(4)}"])
    b.add(r.choice(["Patient", "Pt", "Name:"]), " ", ("NAME", f"{first} {last}"), ", MRN: ", ("MRN", mrn))
    b.add(
        "Admitted",
        " ",
        ("DATE", v.date()),
        "; ",
        ("AGE", age),
        r.choice(["-year-old", " yo", " y/o"]),
        " woman.",
    )
    sentences: list[list[str | tuple[PhiKind, str]]] = [
        ["Seen by", " Dr. ", ("NAME", f"{v.first_name()} {v.last_name()}"), " on ", ("DATE", v.date()), "."],
        ["Mrs. ", ("NAME", v.last_name()), " reports her ", r.choice(["daughter", "son", "husband"]), " ",
         ("NAME", v.first_name()), " lives nearby."],
        ["Home address: ", ("ADDRESS", f"{r.randrange(1, 9999)} {r.choice(_STREETS)} {r.choice(_SUFFIX)}"),
         ", ", ("ADDRESS", (city := r.choice(_CITIES))[0]), ", ", city[1], " ", ("ZIP", v.digits(5)), "."],
        ["Call back at ", ("PHONE", v.phone()), "; fax records to ", ("FAX", v.phone()), "."],
        ["Contact email ", ("EMAIL", f"{first.lower()}.{last.lower()}{v.digits(2)}@example.com"),
         ", patient portal ", ("URL", f"https://portal.example.org/u/{v.digits(6)}"), "."],
        ["SSN ", ("SSN", f"{r.randrange(100, 600)}-{r.randrange(10, 99)}-{v.digits(4)}"), " on file."],
        ["Insurance member ID ", ("ACCOUNT", f"{r.choice(['HP', 'BC', 'AE'])}{v.digits(8)}"),
         "; billing account #", ("ACCOUNT", v.digits(9)), "."],
        ["Pacemaker serial number ", ("DEVICE", f"PM{v.digits(6)}{r.choice('ABCXYZ')}"), " interrogated."],
        ["Driver's license ", ("LICENSE", f"{r.choice('ABDFGHKM')}{v.digits(7)}"), " verified at registration."],
        ["Telehealth session from IP ", ("IP", v.ip()), " was stable."],
        [r.choice(["Discussed with", "Signed by", "Accompanied by"]), " ", ("NAME", f"{v.first_name()} {v.last_name()}"), "."],
        [("NAME", f"{v.first_name()} {v.last_name()}"), " (nephew) will drive her home on ", ("DATE", v.date()), "."],
    ]  # fmt: skip
    if style == "varied":
        sentences = _varied(v, first, last)
    fillers: list[str | tuple[PhiKind, str]] = list(r.sample(_FILLER, 4))
    body = sentences + [[f] for f in fillers]
    r.shuffle(body)
    for sentence in body:
        b.add(*sentence)
    return SyntheticNote("".join(b.parts).rstrip(), b.phi)


def generate_notes(n: int = 200, seed: int = 0, style: str = "plain") -> list[SyntheticNote]:
    """``n`` notes, the same for the same seed; every note carries every PHI kind. ``varied`` uses a
    second set of phrasings that the rules were not written against."""
    values = _Values(random.Random(seed))
    return [_note(values, style) for _ in range(n)]


@dataclass
class KindScore:
    """Recall counts planted spans fully covered by found PHI of any kind (covered is protected);
    precision counts found spans of this kind that touch some planted PHI."""

    planted: int = 0
    caught: int = 0
    found: int = 0
    correct: int = 0

    @property
    def recall(self) -> float:
        return self.caught / self.planted if self.planted else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.found if self.found else 1.0


def score(notes: list[SyntheticNote]) -> dict[str, KindScore]:
    """Recall and precision per kind of :func:`bastion.data.textscrub.find_phi` on ``notes``."""
    from bastion.data.textscrub import PHI_KINDS, find_phi

    scores: dict[str, KindScore] = {kind: KindScore() for kind in PHI_KINDS}
    for note in notes:
        found = find_phi(note.text)
        covered = bytearray(len(note.text))
        for span in found:
            covered[span.start : span.end] = b"\x01" * (span.end - span.start)
        planted = bytearray(len(note.text))
        for start, end, kind in note.phi:
            planted[start:end] = b"\x01" * (end - start)
            s = scores[kind]
            s.planted += 1
            s.caught += all(covered[i] or not note.text[i].isalnum() for i in range(start, end))
        for span in found:
            s = scores[span.kind]
            s.found += 1
            s.correct += any(planted[span.start : span.end])
    return scores
