"""``num_workers`` on fine-tuning jobs: checked when the job is created (a clear 422), refused by a
local job process, and passed on by the SDK and ``bastion ft create --num-workers``. The Ray run
itself is tests/jobs/executors/test_ray_ft_parallel.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from bastion.context import Context
from bastion.errors import Invalid
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory
from tests.llm.support import FT, chat_records, jsonl, register, upload


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_create_checks_num_workers(
    api: ApiFactory, admin: Caller, alice: Caller, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = api("bastion.jobs.runner:run_training")
    register(client, admin, tiny_model)
    file_id = upload(client, alice, jsonl(chat_records(8))).json()["id"]

    def create(hp: dict[str, Any]) -> Any:
        body = {"model": "tiny", "training_file": file_id, "hyperparameters": hp}
        return client.post(f"{FT}/jobs", json=body, headers=alice.headers)

    for bad in (0, 65, "two"):
        r = create({"num_workers": bad})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error"), r.text
    r = create({"num_workers": 2})  # this server runs jobs locally
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "needs_ray_executor" and error["field"] == "hyperparameters.num_workers"
    assert "BASTION_EXECUTOR=ray" in error["message"]
    monkeypatch.setattr(client.harness.ctx.settings, "executor", "ray")
    r = create({"num_workers": 2, "dp": {"enabled": True}})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "dp_unsupported"), r.text
    est = client.post(
        f"{FT}/jobs/estimate",
        json={"model": "tiny", "training_file": file_id, "hyperparameters": {"num_workers": 2}},
        headers=alice.headers,
    )
    assert est.status_code == 200, est.text


def test_a_local_job_process_refuses_more_than_one_worker() -> None:
    """Should a job with num_workers 2 reach a local job process, it fails at once, not on one worker."""
    from bastion.llm.train import run_finetune

    class Ctx:
        spec = {"job_id": "j", "params": {"num_workers": 2, "base_model": {}}, "dataset": {}}

    with pytest.raises(Invalid) as err:
        run_finetune(cast(Any, Ctx()))
    assert err.value.code == "needs_ray_executor"


def test_sdk_and_cli_pass_num_workers_as_a_hyperparameter() -> None:
    from bastion.cli.ft import _hyper
    from bastion.cli.main import app
    from bastion.client.fine_tuning import job_body

    body = job_body("tiny", "file-1", {"num_workers": 2, "hyperparameters": {"n_epochs": 1}, "suffix": None})
    assert body == {
        "model": "tiny",
        "training_file": "file-1",
        "hyperparameters": {"n_epochs": 1, "num_workers": 2},
    }
    assert _hyper(["lora.r=4"], 2, None, None, 3) == {"lora": {"r": 4}, "n_epochs": 2, "num_workers": 3}
    result = CliRunner().invoke(app, ["ft", "create", "-m", "tiny", "-t", "f", "--num-workers", "0"])
    assert result.exit_code == 2 and "num-workers" in result.output
