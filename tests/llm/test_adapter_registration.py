"""A fine-tuning job's adapter is a model version the moment the job reads ``succeeded``: its
``fine_tuned_model`` names a version that exists (written in the transaction that completed the job)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.context import Context
from bastion.errors import NotFound
from bastion.llm.views import job_view
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory, at_completion, principal, wait_for
from tests.llm.support import FT, chat_records, jsonl, register, upload, wait_job

RUNNER = "bastion.jobs.runner:run_training"
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def test_the_adapter_is_registered_when_the_job_reads_succeeded(
    api: ApiFactory,
    ctx: Context,
    admin: Caller,
    alice: Caller,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    who = principal(alice)

    def adapter(job_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        view = job_view(ctx.services.jobs.get_any(job_id))
        try:
            return view, ctx.services.models.get(who, str(view["fine_tuned_model"]))
        except NotFound:
            return view, None

    seen = at_completion(monkeypatch, adapter)
    client = api(RUNNER)
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(16))).json()["id"]
    hp = {"n_epochs": 1, "batch_size": 8, "learning_rate": 0.01}
    job = client.post(
        f"{FT}/jobs",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": hp, "suffix": "now"},
        headers=alice.headers,
    ).json()
    done = wait_job(client, alice, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done["error"]
    [(view, model)] = wait_for(lambda: seen, 30, what="the check at completion")
    assert view["status"] == "succeeded" and view["fine_tuned_model"] == f"ft:tiny:now:{job['id'][:8]}"
    assert model is not None, f"{view['fine_tuned_model']} is not a model yet"
    assert model["name"] == view["fine_tuned_model"] and model["versions"] == 1
    [version] = model["history"]
    assert version["lineage"]["job_id"] == job["id"] and version["lineage"]["kind"] == "lora_adapter"
    assert version["lineage"]["training_file"] == file_id
    assert version["metrics"]["trained_tokens"] == done["trained_tokens"]
