"""Training together on one upload: any member of the dataset's project may train on it, and the
job reads it by the project's grant, not a person's, so it runs when the uploader leaves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Caller
from tests.jobs.support import QUICK_PARAMS, ApiFactory, wait_for
from tests.projects.test_project_routes import P, _upload, add, api, new_project

__all__ = ["api"]  # the fixture, shared with the project route tests


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_colleague_trains_on_an_upload_after_its_uploader_left(
    api: ApiFactory, make_caller: Callable[..., Caller]
) -> None:
    client = api("bastion.jobs.runner:run_training")
    alice, bob, dave = (make_caller("user", n) for n in ("alice", "bob", "dave"))
    a = new_project(client, alice, "Cardiology study")
    add(client, alice, a, bob, "member")
    up = _upload(client, bob, a)
    assert up.status_code == 201, up.text
    submit = {
        "model_type": "alzheimer_classifier",
        "dataset_source": "user_provided",
        "dataset_id": up.json()["id"],
        "target": "label",
        "params": QUICK_PARAMS,
        "project": a,
    }
    t = "/api/v1/training"
    assert client.post(f"{t}/submit", json=submit, headers=dave.headers).status_code == 404
    r = client.post(f"{t}/submit", json=submit, headers=alice.headers)
    assert r.status_code == 200, "a colleague trains on the uploader's dataset: " + r.text
    job = r.json()["job_id"]
    # the uploader leaves before the job has (necessarily) read the data
    assert client.delete(f"{P}/{a}/members/bob", headers=alice.headers).status_code == 200

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{t}/status/{job}", headers=alice.headers).json()
        return body if body["status"] in ("completed", "failed") else None

    done = wait_for(finished, 120, 0.1, "the job on the shared upload to finish")
    assert done["status"] == "completed", done["error_message"]
    assert client.get(f"/api/v1/datasets/{up.json()['id']}", headers=bob.headers).status_code == 404
    assert client.get(f"{t}/model/{job}", headers=bob.headers).status_code == 404
    assert client.get(f"{t}/model/{job}", headers=alice.headers).status_code == 200
