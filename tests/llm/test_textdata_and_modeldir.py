"""JSONL validation, completion-only encoding, and model directories that are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.errors import IntegrityError, Invalid
from bastion.llm.lora import encode_all, pack
from bastion.llm.modeldir import inspect_model_dir, load_base
from bastion.llm.textdata import IGNORE, parse_jsonl, scrub_records
from tests.llm.support import chat_records, jsonl, pickle_only, remote_code


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[1, 2]", "JSON object"),
        ('{"messages": []}', "non-empty"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "role"),
        ('{"messages": [{"role": "assistant", "content": 3}]}', "content must be a string"),
        ('{"prompt": "p"}', "both be strings"),
        ('{"text": ""}', "non-empty"),
        ('{"other": 1}', "unknown shape"),
    ],
)
def test_each_bad_line_is_named(line: str, why: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_jsonl(jsonl(chat_records(2)) + line.encode() + b"\n")
    assert err.value.code == "invalid_jsonl"
    assert err.value.details["errors"][0]["line"] == 3 and why in err.value.details["errors"][0]["error"]


def test_mixed_shapes_and_bad_encoding_are_refused() -> None:
    with pytest.raises(Invalid, match="instruction record in a chat file"):
        parse_jsonl(jsonl([*chat_records(1), {"prompt": "a", "completion": "b"}]))
    with pytest.raises(Invalid, match="UTF-8"):
        parse_jsonl(b"\xff\xfe{}")


def test_scrubbing_counts_and_removes_phi() -> None:
    parsed = scrub_records(parse_jsonl(jsonl(chat_records(4))))
    text = json.dumps(parsed.records)
    assert "John Smith" not in text and "[NAME]" in text and "[MRN]" in text
    assert parsed.scrub_counts["NAME"] == 4 and parsed.scrub_counts["MRN"] == 4


def test_loss_covers_the_completion_only(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True)
    chat = encode_all(tok, "chat", chat_records(1), 256)[0]
    answer = tok("Give acetaminophen.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    trained = [t for t in chat["labels"] if t != IGNORE]
    assert trained == answer and chat["input_ids"][-len(answer) :] == answer
    plain = encode_all(tok, "plain", [{"text": "abc"}], 256)[0]
    assert plain["labels"] == plain["input_ids"]
    packed = pack([chat, chat, chat], 16)
    assert all(len(p["input_ids"]) == 16 for p in packed)


def test_model_directories_refused(tiny_model: Path, tmp_path: Path) -> None:
    info = inspect_model_dir(tiny_model)
    assert info.model_type == "gpt2" and info.parameter_count > 0
    cases = {
        "pickle_weights_refused": pickle_only(tiny_model, tmp_path),
        "remote_code_refused": remote_code(tiny_model, tmp_path),
        "model_dir_invalid": tmp_path / "missing",
    }
    for code, path in cases.items():
        with pytest.raises(Invalid) as err:
            inspect_model_dir(path)
        assert err.value.code == code
    with pytest.raises(IntegrityError):
        load_base(str(tiny_model), "0" * 64)


def test_multi_turn_chat_trains_every_assistant_turn(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True)
    turns = ["Give acetaminophen.", "Twice a day.", "Recheck in two weeks."]
    messages = [{"role": "system", "content": "You are a clinician."}]
    for q, a in zip(["Fever, treatment?", "How often?", "Follow up?"], turns, strict=True):
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    ex = encode_all(tok, "chat", [{"messages": messages}], 512)[0]
    ids, labels = ex["input_ids"], ex["labels"]
    answers = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in turns]
    # The trained tokens are exactly the three answers (with their EOS), in order ...
    assert [t for t in labels if t != IGNORE] == [t for a in answers for t in a]
    # ... each sitting at its place in the input (labels equal the ids wherever they are trained) ...
    assert all(lab in (IGNORE, i) for lab, i in zip(labels, ids, strict=True))
    # ... as three separate runs: user turns, the system prompt and role headers are masked.
    runs, inside = 0, False
    for lab in labels:
        if lab != IGNORE and not inside:
            runs += 1
        inside = lab != IGNORE
    assert runs == 3
    masked = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == IGNORE])
    assert "Fever" in masked and "How often" in masked and "clinician" in masked
    assert "acetaminophen" not in masked and "Twice" not in masked
    # The sequence is the chat template of the whole conversation (no context repeated).
    assert tok.decode(ids).count("Fever") == 1 and tok.decode(ids).count("<|assistant|>") == 3
