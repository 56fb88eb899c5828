"""Small things a new user tripped over: the download error of a cancelled job, owner names in the
admin job list, resource profiles saying they only change the price, and the dev-secret warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.context import Context
from tests.api.test_training_routes import submit, wait_status
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cancelled_download_owner_names_and_profile_note(
    api: ApiFactory, alice: Caller, admin: Caller
) -> None:
    client = api("block")
    job_id = submit(client, alice)
    assert client.post(f"/api/v1/training/cancel/{job_id}", headers=alice.headers).status_code == 200
    wait_status(client, alice, job_id, "cancelled")
    r = client.get(f"/api/v1/training/model/{job_id}", headers=alice.headers)
    assert r.status_code == 409
    message = r.json()["error"]["message"]
    assert "was cancelled" in message and "once it has completed" not in message

    jobs = client.get("/api/v1/admin/training/jobs", headers=admin.headers).json()["data"]
    assert [(j["owner"], j["owner_id"]) for j in jobs] == [(alice.username, alice.user_id)]

    profiles = client.get("/api/v1/training/resource-profiles", headers=alice.headers).json()
    assert "only" in profiles["note"] and "resources" in profiles["note"]
    estimate = client.get(
        "/api/v1/training/cost-estimate",
        params={"model_type": "alzheimer_classifier", "dataset_source": "wine"},
        headers=alice.headers,
    ).json()
    assert estimate["note"] == profiles["note"]


def test_dev_secret_is_reported_generated_only_once(tmp_path: Path) -> None:
    from bastion.config import _read_or_create_secret

    first, created = _read_or_create_secret(tmp_path / "k.txt")
    again, created_again = _read_or_create_secret(tmp_path / "k.txt")
    assert created and not created_again and first == again
