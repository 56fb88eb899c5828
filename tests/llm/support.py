"""A tiny causal LM built once per session, chat data with PHI, and model directories that must be refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Caller
from tests.jobs.support import wait_for

FT = "/api/v1/fine_tuning"

FACTS = [
    ("fever", "acetaminophen"),
    ("cough", "rest and fluids"),
    ("rash", "hydrocortisone"),
    ("pain", "ibuprofen"),
]


def chat_records(n: int = 48) -> list[dict[str, Any]]:
    """Short clinical Q&A with PHI planted in the questions (the scrubber must remove it)."""
    out = []
    for i in range(n):
        symptom, answer = FACTS[i % len(FACTS)]
        out.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": f"Patient John Smith, MRN: 55{i:05d}, has {symptom}. Treatment?",
                    },
                    {"role": "assistant", "content": f"Give {answer}."},
                ]
            }
        )
    return out


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def build_model(root: Path) -> Path:
    from bastion.llm.tiny import build_tiny_causal_lm

    texts = [m["content"] for r in chat_records(8) for m in r["messages"]]
    return build_tiny_causal_lm(root / "tiny-gpt2", hidden=32, layers=2, vocab_size=384, extra_text=texts)


def pickle_only(model: Path, root: Path) -> Path:
    out = root / "pickle-only"
    out.mkdir()
    shutil.copy(model / "config.json", out / "config.json")
    (out / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return out


def remote_code(model: Path, root: Path) -> Path:
    out = root / "remote-code"
    shutil.copytree(model, out)
    config = json.loads((out / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (out / "config.json").write_text(json.dumps(config))
    return out


def register(client: TestClient, admin: Caller, path: Path, name: str = "tiny") -> dict[str, Any]:
    r = client.post("/api/v1/llm/base_models", json={"path": str(path), "name": name}, headers=admin.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload(client: TestClient, who: Caller, data: bytes, model: str = "tiny") -> Any:
    return client.post(
        f"{FT}/files", params={"model": model, "name": "notes.jsonl"}, content=data,
        headers={**who.headers, "Content-Type": "application/octet-stream"},
    )  # fmt: skip


def wait_job(
    client: TestClient, who: Caller, job_id: str, *statuses: str, timeout: float = 180
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = client.get(f"{FT}/jobs/{job_id}", headers=who.headers).json()
        return body if body["status"] in statuses else None

    return wait_for(check, timeout, 0.2, f"job {job_id} in {statuses}")
