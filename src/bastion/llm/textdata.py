"""JSONL text datasets for fine-tuning: validated line by line, PHI-scrubbed, token-counted.

Three shapes, one per file (the first valid line decides; every other line must match):

* chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``, ending
  with an assistant message (the loss covers every assistant message, not only the last);
* instruction: ``{"prompt": "...", "completion": "..."}`` (loss on the completion only);
* plain: ``{"text": "..."}`` (loss on every token).

Order of work at upload: size limit → parse every line (collecting *every* bad line with its
number) → refuse the whole file if any line is bad or none is left (nothing half-stored) → scrub
every string with :func:`bastion.data.textscrub.scrub_text` → encode with the base model's tokenizer
and refuse lines over the token limit → statistics (numbers only, never text) → one vault write.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion.errors import Invalid

Shape = Literal["chat", "instruction", "plain"]
ROLES = frozenset({"system", "user", "assistant"})
MAX_REPORTED_ERRORS = 50
MAX_LINES = 200_000
IGNORE = -100


@dataclass
class ParsedText:
    shape: Shape
    records: list[dict[str, Any]]
    scrub_counts: dict[str, int] = field(default_factory=dict)


def _shape_of(obj: Any) -> tuple[Shape | None, str | None]:
    """(shape, None) for a valid record, else (None, why)."""
    if not isinstance(obj, dict):
        return None, "a line must be a JSON object"
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            return None, "'messages' must be a non-empty list"
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or set(m) - {"role", "content", "name"}:
                return None, f"message {i} must be an object with 'role' and 'content'"
            if m.get("role") not in ROLES:
                return None, f"message {i}: role must be one of system, user, assistant"
            if not isinstance(m.get("content"), str):
                return None, f"message {i}: content must be a string"
        if msgs[-1]["role"] != "assistant":
            return None, "the last message must be the assistant's (it is what the model learns)"
        return "chat", None
    if "prompt" in obj or "completion" in obj:
        if not isinstance(obj.get("prompt"), str) or not isinstance(obj.get("completion"), str):
            return None, "'prompt' and 'completion' must both be strings"
        if not obj["completion"].strip():
            return None, "'completion' is empty"
        return "instruction", None
    if "text" in obj:
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            return None, "'text' must be a non-empty string"
        return "plain", None
    return None, "unknown shape: expected 'messages', 'prompt'/'completion' or 'text'"


def parse_jsonl(data: bytes) -> ParsedText:
    """Every line checked; Invalid(``invalid_jsonl``) lists the bad ones by number."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the file is not UTF-8 text", code="invalid_jsonl") from None
    errors: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    shape: Shape | None = None
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise Invalid(f"more than {MAX_LINES} lines", code="too_many_lines")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append({"line": number, "error": f"not valid JSON ({exc.msg})"})
            continue
        got, why = _shape_of(obj)
        if got is None:
            errors.append({"line": number, "error": why})
        elif shape is not None and got != shape:
            errors.append({"line": number, "error": f"a {got} record in a {shape} file"})
        else:
            shape = got
            records.append(obj)
    if errors:
        raise Invalid(
            f"{len(errors)} bad line(s); nothing was stored (first at line {errors[0]['line']}: "
            f"{errors[0]['error']})",
            code="invalid_jsonl",
            errors=errors[:MAX_REPORTED_ERRORS],
            error_count=len(errors),
        )
    if not records or shape is None:
        raise Invalid("the file has no records", code="empty_file")
    return ParsedText(shape, records)


def scrub_records(parsed: ParsedText, policy: Any = None) -> ParsedText:
    """Every string of every record through the free-text scrubber; counts per PHI kind."""
    from bastion.data.textscrub import PHI_KINDS, scrub_text

    totals: dict[str, int] = dict.fromkeys(PHI_KINDS, 0)

    def clean(value: str) -> str:
        result = scrub_text(value, policy)
        for kind, n in result.counts_by_kind.items():
            totals[kind] += n
        return result.text

    out: list[dict[str, Any]] = []
    for rec in parsed.records:
        if parsed.shape == "chat":
            out.append(
                {"messages": [{"role": m["role"], "content": clean(m["content"])} for m in rec["messages"]]}
            )
        elif parsed.shape == "instruction":
            out.append({"prompt": clean(rec["prompt"]), "completion": clean(rec["completion"])})
        else:
            out.append({"text": clean(rec["text"])})
    return ParsedText(parsed.shape, out, totals)


def encode(tokenizer: Any, shape: str, record: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(input_ids, labels): labels are IGNORE on prompts, so the loss covers completions only (every
    assistant turn of a chat, each followed by EOS so the model learns where a turn ends)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if shape == "plain":
        text_ids: list[int] = tokenizer(record["text"], add_special_tokens=False)["input_ids"] + eos
        return text_ids, list(text_ids)
    if shape == "instruction":
        turns = [(record["prompt"], record["completion"])]
    else:
        turns = _chat_turns(tokenizer, record["messages"])
    ids: list[int] = []
    labels: list[int] = []
    for prompt, completion in turns:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + eos
        ids += p + c
        labels += [IGNORE] * len(p) + c
    return ids, labels


def _chat_turns(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(context since the previous answer, answer) per assistant message.

    The context of answer k is the chat template of every message before it minus what earlier
    pieces already hold (the template renders earlier answers verbatim; an EOS the template puts
    right after an answer is dropped, ``encode`` appends the EOS token itself). A template that does
    not render earlier answers verbatim gets one piece per answer with its full context, which is
    still correct for that answer, at the cost of repeating the context."""
    eos_text = getattr(tokenizer, "eos_token", None) or ""
    turns: list[tuple[str, str]] = []
    seen = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        context = _chat_prompt(tokenizer, messages[:i])
        if seen and context.startswith(seen):
            context = context[len(seen) :]
            if eos_text and context.startswith(eos_text):
                context = context[len(eos_text) :]
        turns.append((context, m["content"]))
        seen = _chat_prompt(tokenizer, messages[:i]) + m["content"]
    return turns


def _chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "


def prompt_text(tokenizer: Any, prompt: str | None, messages: list[dict[str, str]] | None) -> str:
    """What generation continues: the raw prompt, or the chat template of the messages."""
    if messages:
        return _chat_prompt(tokenizer, messages)
    return prompt or ""


def token_stats(tokenizer: Any, parsed: ParsedText, max_tokens: int) -> dict[str, Any]:
    """Token statistics; Invalid(``example_too_long``) names every line over ``max_tokens``."""
    lengths: list[int] = []
    trained = 0
    too_long: list[dict[str, Any]] = []
    for i, rec in enumerate(parsed.records, start=1):
        ids, labels = encode(tokenizer, parsed.shape, rec)
        if len(ids) > max_tokens:
            too_long.append({"line": i, "error": f"{len(ids)} tokens (the limit is {max_tokens})"})
        lengths.append(len(ids))
        trained += sum(1 for x in labels if x != IGNORE)
    if too_long:
        raise Invalid(
            f"{len(too_long)} example(s) over the token limit of {max_tokens}; nothing was stored",
            code="example_too_long",
            errors=too_long[:MAX_REPORTED_ERRORS],
            error_count=len(too_long),
        )
    n = len(lengths)
    mean = sum(lengths) / n
    return {
        "examples": n,
        "total_tokens": sum(lengths),
        "trained_tokens": trained,
        "min_tokens": min(lengths),
        "max_tokens": max(lengths),
        "mean_tokens": round(mean, 2),
        "std_tokens": round(math.sqrt(sum((x - mean) ** 2 for x in lengths) / n), 2),
    }


def to_jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def read_stored(data: bytes) -> ParsedText:
    """A stored (already validated and scrubbed) dataset back into records."""
    return parse_jsonl(data)
