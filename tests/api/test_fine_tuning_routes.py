"""Fine-tuning over HTTP on a tiny model: register, upload (scrubbed), train, test, cancel, foreign 404s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.context import Context
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory, wait_for
from tests.llm.support import (
    FT,
    build_model,
    chat_records,
    jsonl,
    pickle_only,
    register,
    remote_code,
    upload,
    wait_job,
)

RUNNER = "bastion.jobs.runner:run_training"
HP = {"n_epochs": 3, "batch_size": 8, "learning_rate": 0.01, "lora": {"r": 8, "alpha": 16}}
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("llm"))


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def test_register_refuses_pickles_remote_code_and_non_admins(
    api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path, tmp_path: Path
) -> None:
    client = api(RUNNER)
    body = register(client, admin, tiny_model)
    assert body["architecture"] == "GPT2LMHeadModel" and body["parameter_count"] > 10_000
    assert len(body["weights_sha256"]) == 64
    for path, code in (
        (pickle_only(tiny_model, tmp_path), "pickle_weights_refused"),
        (remote_code(tiny_model, tmp_path), "remote_code_refused"),
    ):
        r = client.post(
            "/api/v1/llm/base_models", json={"path": str(path), "name": "x"}, headers=admin.headers
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    r = client.post(
        "/api/v1/llm/base_models", json={"path": str(tiny_model), "name": "y"}, headers=alice.headers
    )
    assert r.status_code == 403
    assert (
        client.post(
            "/api/v1/llm/base_models", json={"path": str(tiny_model), "name": "tiny"}, headers=admin.headers
        ).status_code
        == 409
    )
    listed = client.get("/api/v1/llm/base_models", headers=alice.headers).json()
    assert [m["name"] for m in listed["data"]] == ["tiny"]


def test_bad_files_are_refused_whole(api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path) -> None:
    client = api(RUNNER)
    register(client, admin, tiny_model)
    bad = jsonl(chat_records(3)) + b"{not json\n" + b'{"messages": [{"role": "user", "content": "hi"}]}\n'
    r = upload(client, alice, bad)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_jsonl" and [e["line"] for e in err["errors"]] == [4, 5]
    assert upload(client, alice, b"\n\n").json()["error"]["code"] == "empty_file"
    long = jsonl([{"text": "word " * 400}])
    r = upload(client, alice, long)
    assert r.status_code == 422 and r.json()["error"]["code"] == "example_too_long"
    assert upload(client, alice, jsonl(chat_records(2)), model="nope").status_code == 404
    assert client.get("/api/v1/datasets", headers=alice.headers).json()["data"] == []


def test_create_job_checks_every_input(
    api: ApiFactory, admin: Caller, alice: Caller, bob: Caller, tiny_model: Path
) -> None:
    client = api(RUNNER)
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(8))).json()["id"]
    cases = [
        ({"model": "gpt-17"}, 422, "unknown_base_model"),
        ({"hyperparameters": {"lora": {"target_modules": ["q_proj"]}}}, 422, "unknown_target_module"),
        ({"hyperparameters": {"qlora": True}}, 422, "gpu_required"),
        ({"hyperparameters": {"bf16": True}}, 422, "gpu_required"),
        ({"hyperparameters": {"n_epochs": 0}}, 422, "validation_error"),
    ]
    for extra, status, code in cases:
        r = client.post(
            f"{FT}/jobs", json={"model": "tiny", "training_file": file_id, **extra}, headers=alice.headers
        )
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (extra, r.text)
    r = client.post(f"{FT}/jobs", json={"model": "tiny", "training_file": file_id}, headers=bob.headers)
    assert r.status_code == 404, "somebody else's file does not exist for bob"
    est = client.post(
        f"{FT}/jobs/estimate", json={"model": "tiny", "training_file": file_id}, headers=alice.headers
    )
    assert est.status_code == 200
    body = est.json()
    assert body["tokens"] > 0 and body["estimated_cost"] > 0 and len(body["profiles"]) >= 2
    tabular = client.post(
        "/api/v1/training/submit",
        json={
            "model_type": "alzheimer_classifier",
            "dataset_source": "user_provided",
            "dataset_id": file_id,
            "target": "x",
        },
        headers=alice.headers,
    )
    assert tabular.status_code == 422 and tabular.json()["error"]["code"] == "not_a_table"


def test_fine_tune_end_to_end(
    api: ApiFactory, admin: Caller, alice: Caller, bob: Caller, tiny_model: Path
) -> None:
    client = api(RUNNER)
    register(client, admin, tiny_model)
    up = upload(client, alice, jsonl(chat_records(48)))
    assert up.status_code == 201, up.text
    f = up.json()
    assert up.headers["Location"].endswith(f["id"])
    assert f["shape"] == "chat" and f["statistics"]["examples"] == 48
    replaced = f["deidentification"]["replaced"]
    assert replaced["NAME"] == 48 and replaced["MRN"] == 48
    r = client.post(
        f"{FT}/jobs", json={"model": "tiny", "training_file": f["id"], "hyperparameters": HP, "suffix": "clinic", "seed": 3},
        headers=alice.headers,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] in ("queued", "validating_files", "running") and job["object"] == "fine_tuning.job"
    assert r.headers["Location"] == f"{FT}/jobs/{job['id']}"
    assert client.get(f"{FT}/jobs/{job['id']}", headers=bob.headers).status_code == 404
    assert client.post(f"{FT}/jobs/{job['id']}/cancel", headers=bob.headers).status_code == 404
    done = wait_job(client, alice, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done["error"]
    m = done["metrics"]
    assert m["eval_loss"] < m["initial_eval_loss"], "validation loss fell"
    assert done["fine_tuned_model"] == f"ft:tiny:clinic:{job['id'][:8]}"
    assert done["cost"]["actual_cost"] > 0 and done["cost"]["estimated_cost"] > 0

    events = client.get(f"{FT}/jobs/{job['id']}/events", params={"limit": 2}, headers=alice.headers).json()
    assert len(events["data"]) == 2 and events["has_more"] and events["next_cursor"]
    seen, cursor = [], None
    while True:
        page = client.get(
            f"{FT}/jobs/{job['id']}/events",
            params={"limit": 50, **({"cursor": cursor} if cursor else {})},
            headers=alice.headers,
        ).json()
        seen += page["data"]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert [e["data"]["epoch"] for e in seen if e["type"] == "metrics"] == [1, 2, 3]
    with client.stream(
        "GET", f"{FT}/jobs/{job['id']}/events", params={"stream": "true"}, headers=alice.headers
    ) as s:
        text = "".join(s.iter_text())
    assert "event: end" in text and "succeeded" in text
    ckpts = client.get(f"{FT}/jobs/{job['id']}/checkpoints", headers=alice.headers).json()["data"]
    assert [c["epoch"] for c in ckpts] == [1, 2, 3] and all("eval_loss" in c["metrics"] for c in ckpts)
    listed = client.get(f"{FT}/jobs", headers=alice.headers).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    assert client.get(f"{FT}/jobs", headers=bob.headers).json()["data"] == []
    for path in ("events", "checkpoints"):
        assert client.get(f"{FT}/jobs/{job['id']}/{path}", headers=bob.headers).status_code == 404
    assert client.get(f"{FT}/files/{f['id']}", headers=bob.headers).status_code == 404
    assert client.get(f"/api/v1/training/model/{job['id']}", headers=bob.headers).status_code == 404

    model = client.get(f"/api/v1/models/{done['fine_tuned_model']}", headers=alice.headers).json()
    lineage = model["history"][0]["lineage"]
    assert lineage["base_model"]["name"] == "tiny" and lineage["training_file"] == f["id"]
    model_id = model["id"]
    prompt = {
        "messages": [{"role": "user", "content": "Patient has fever. Treatment?"}],
        "max_new_tokens": 8,
        "temperature": 0,
        "compare": True,
    }
    g = client.post(f"/api/v1/models/{model_id}/generate", json=prompt, headers=alice.headers)
    assert g.status_code == 200, g.text
    out = g.json()
    assert out["text"] != out["base"]["text"], "fine-tuned and base answers differ"
    assert "acetaminophen" in out["text"].replace(" ", "") or out["completion_tokens"] > 0
    sampled = {**prompt, "compare": False, "temperature": 0.8, "seed": 11}
    first = client.post(f"/api/v1/models/{model_id}/generate", json=sampled, headers=alice.headers).json()
    client.app.state.ctx.services.generation._cache.clear()  # type: ignore[attr-defined]
    again = client.post(f"/api/v1/models/{model_id}/generate", json=sampled, headers=alice.headers).json()
    assert first["text"] == again["text"], "reloaded from the vault, same seed, same answer"
    with client.stream(
        "POST", f"/api/v1/models/{model_id}/generate", json={**sampled, "stream": True}, headers=alice.headers
    ) as s:
        streamed = "".join(s.iter_text())
    assert "event: token" in streamed and "event: end" in streamed
    bad = client.post(
        f"/api/v1/models/{model_id}/generate", json={**prompt, "max_new_tokens": 10**9}, headers=alice.headers
    )
    assert bad.status_code == 422
    assert (
        client.post(f"/api/v1/models/{model_id}/generate", json=prompt, headers=bob.headers).status_code
        == 404
    )
    for who_model in (model_id, "tiny"):
        foreign = client.post(
            f"/api/v1/models/{who_model}/perplexity", json={"file": f["id"]}, headers=bob.headers
        )
        assert foreign.status_code == 404, "bob cannot read alice's file through perplexity"
    ppl = client.post(
        f"/api/v1/models/{model_id}/perplexity", json={"file": f["id"]}, headers=alice.headers
    ).json()
    base_ppl = client.post(
        "/api/v1/models/tiny/perplexity", json={"file": f["id"]}, headers=alice.headers
    ).json()
    assert ppl["perplexity"] < base_ppl["perplexity"]
    # The merged export gives the same greedy answer as the adapter on its base.
    from bastion.client.sdk import BastionClient

    sdk = BastionClient("http://testserver", alice.key, http=client)
    merged = sdk.fine_tuning.download(job["id"], merged=True)
    assert merged.model_config["kind"] == "merged_causal_lm"
    assert sdk.fine_tuning.download(job["id"]).model_config["kind"] == "lora_adapter"
    assert client.get(f"{FT}/jobs/{job['id']}/merged_model", headers=bob.headers).status_code == 404
    import torch
    from safetensors.torch import load
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    net = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(tiny_model), local_files_only=True))
    net.load_state_dict(load(merged.model_bytes), strict=False)
    net.tie_weights()
    tok = AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True)
    ids = tok(
        tok.apply_chat_template(prompt["messages"], tokenize=False, add_generation_prompt=True),
        return_tensors="pt",
        add_special_tokens=False,
    )
    with torch.no_grad():
        new = net.eval().generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)[
            0, ids["input_ids"].shape[1] :
        ]
    assert tok.decode(new, skip_special_tokens=True) == out["text"]
    download = client.get(f"/api/v1/training/model/{job['id']}", headers=alice.headers)
    assert download.status_code == 200 and download.json()["encrypted_model"]


def test_cancel_while_training(api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path) -> None:
    client = api(RUNNER)
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(48))).json()["id"]
    hp = {**HP, "n_epochs": 50, "batch_size": 1}
    job = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": hp},
        headers=alice.headers,
    ).json()
    wait_for(
        lambda: client.get(f"{FT}/jobs/{job['id']}/events", params={"limit": 100}, headers=alice.headers).json()["data"][-1]["data"].get("stage") == "train",
        120, 0.2, "training to start",
    )  # fmt: skip
    r = client.post(f"{FT}/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert wait_job(client, alice, job["id"], "cancelled")["finished_at"] is not None
    assert client.post(f"{FT}/jobs/{job['id']}/cancel", headers=alice.headers).json()["status"] == "cancelled"


def test_packing_checkpointing_runtime_limit_and_generation_slots(
    api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path
) -> None:
    client = api(RUNNER)
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(24))).json()["id"]
    hp = {
        "n_epochs": 1,
        "batch_size": 2,
        "packing": True,
        "gradient_checkpointing": True,
        "max_seq_length": 64,
    }
    packed = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": hp},
        headers=alice.headers,
    ).json()
    slow = {"n_epochs": 50, "batch_size": 1}
    limited = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": slow, "max_runtime_seconds": 4},
        headers=alice.headers,
    ).json()
    done = wait_job(client, alice, packed["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done["error"]
    assert done["hyperparameters"]["packing"] is True
    stopped = wait_job(client, alice, limited["id"], "failed", "succeeded")
    assert stopped["status"] == "failed" and "maximum runtime" in stopped["error"]["message"]
    gen = client.app.state.ctx.services.generation  # type: ignore[attr-defined]
    held = [gen._slots.acquire(blocking=False) for _ in range(2)]
    try:
        busy = client.post(
            "/api/v1/models/tiny/generate", json={"prompt": "a", "max_new_tokens": 2}, headers=alice.headers
        )
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "generation_busy"
    finally:
        for ok in held:
            if ok:
                gen._slots.release()
    assert (
        client.post(
            "/api/v1/models/tiny/generate", json={"prompt": "a", "max_new_tokens": 2}, headers=alice.headers
        ).status_code
        == 200
    )
