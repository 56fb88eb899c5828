"""Free-text de-identification: recall and precision per PHI kind on synthetic notes, and notes/s.

Baseline, measured in the same run: the in-text redaction patterns the tabular de-identifier used
before (bastion.data.identifiers.TEXT_REDACTIONS), scored the same way. Prints ``name: ratio`` lines
(recall of the scrubber over the baseline's, macro-averaged) plus the raw figures per kind.
"""

from __future__ import annotations

import argparse
import time


def baseline_recall(notes: list) -> float:
    from bastion.data.identifiers import TEXT_REDACTIONS

    caught = planted = 0
    for note in notes:
        covered = bytearray(len(note.text))
        for pattern in TEXT_REDACTIONS.values():
            for m in pattern.finditer(note.text):
                covered[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
        for start, end, _ in note.phi:
            planted += 1
            caught += all(covered[i] or not note.text[i].isalnum() for i in range(start, end))
    return caught / planted


def main() -> None:
    from bastion.data.clinical_notes import generate_notes, score
    from bastion.data.textscrub import PHI_KINDS, scrub_text

    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--style", choices=["plain", "varied"], default="plain", help="varied: other phrasings"
    )
    args = parser.parse_args()
    parser_style = args.style
    notes = generate_notes(args.notes, seed=args.seed, style=parser_style)
    scores = score(notes)
    t0 = time.perf_counter()
    for note in notes:
        scrub_text(note.text)
    elapsed = time.perf_counter() - t0
    print(f"notes: {len(notes)} ({parser_style})  chars: {sum(len(n.text) for n in notes)}")
    for kind in PHI_KINDS:
        s = scores[kind]
        print(f"{kind:8s} planted={s.planted:5d} recall={s.recall:.4f} precision={s.precision:.4f}")
    planted = sum(s.planted for s in scores.values())
    micro = sum(s.caught for s in scores.values()) / planted
    base = baseline_recall(notes)
    print(f"scrub notes/s: {len(notes) / elapsed:.1f}")
    print(f"min recall over kinds: {min(s.recall for s in scores.values()):.4f} (goal >= 0.98)")
    print(f"recall scrubber {micro:.4f} vs tabular in-text patterns {base:.4f}")
    print(f"recall_vs_tabular_patterns: {micro / base:.2f}")


if __name__ == "__main__":
    main()
