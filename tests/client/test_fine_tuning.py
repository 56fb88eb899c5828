"""``client.fine_tuning`` against a real app: base models, files, estimate, create (num_workers,
project), list, events, follow, cancel, wait, and generation from the base model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.client import BastionClient, NotFoundError, PermissionDeniedError, ValidationError
from tests.conftest import Caller
from tests.jobs.support import ApiFactory
from tests.llm.support import build_model, chat_records

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("llm"))


def test_the_fine_tuning_namespace_end_to_end(
    api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path, tmp_path: Path
) -> None:
    import json

    http = api("block")  # the job runs until released: it is still going when we cancel it
    root = BastionClient(api_key=admin.key, http=http).fine_tuning
    ft = BastionClient(api_key=alice.key, http=http).fine_tuning
    with pytest.raises(PermissionDeniedError):
        ft.base_models.register(tiny_model, "tiny")
    assert root.base_models.register(tiny_model, "tiny")["name"] == "tiny"
    assert [m["name"] for m in ft.base_models.list()] == ["tiny"]
    assert ft.base_models.get("tiny")["architecture"] == "GPT2LMHeadModel"

    data = tmp_path / "notes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_records(8)))
    f = ft.files.upload(data, model="tiny")
    assert f["filename"] == "notes.jsonl" and f["deidentification"]["replaced"]
    assert ft.files.get(f["id"])["id"] == f["id"]

    est = ft.estimate("tiny", f["id"], hyperparameters={"n_epochs": 2}, num_workers=1)
    assert est["epochs"] == 2 and est["profiles"]
    job = ft.create("tiny", f["id"], hyperparameters={"n_epochs": 2}, num_workers=1, suffix="sdk", seed=3)
    assert job["object"] == "fine_tuning.job" and job["suffix"] == "sdk" and job["seed"] == 3
    assert job["hyperparameters"]["n_epochs"] == 2
    with pytest.raises(ValidationError) as err:  # num_workers reaches the server as a hyper-parameter
        ft.create("tiny", f["id"], num_workers=2)
    assert err.value.code == "needs_ray_executor"
    assert [j["id"] for j in ft.list(limit=5)["data"]] == [job["id"]]
    assert [j["id"] for j in ft.list(project=job["project_id"])["data"]] == [job["id"]]
    assert ft.get(job["id"])["id"] == job["id"]
    http.harness.started_pid(job["id"])  # type: ignore[attr-defined]
    assert ft.events(job["id"], limit=100)["data"], "the queued/running events are there"

    assert ft.cancel(job["id"])["status"] == "cancelled"
    assert ft.wait(job["id"], timeout=30)["status"] == "cancelled"
    final = [e for e in ft.follow(job["id"]) if e.get("object") == "fine_tuning.job"]
    assert [e["status"] for e in final] == ["cancelled"]
    assert ft.checkpoints(job["id"]) == []
    with pytest.raises(NotFoundError):
        ft.get("ftjob-00000000")

    out = ft.generate("tiny", prompt="Patient has fever. Treatment?", max_new_tokens=4, temperature=0.0)
    assert out["base_model"] == "tiny" and isinstance(out["text"], str)
    pieces = list(ft.generate_stream("tiny", prompt="Patient has fever.", max_new_tokens=4, temperature=0.0))
    assert (
        "".join(pieces)
        == ft.generate("tiny", prompt="Patient has fever.", max_new_tokens=4, temperature=0.0)["text"]
    )
    assert ft.perplexity("tiny", f["id"])["examples"] == 8
