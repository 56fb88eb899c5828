"""The conventions of docs/api.md, each shown on a route: bounded inputs, one error body, cursors,
Idempotency-Key, Location, idempotent deletes, Allow, WWW-Authenticate, admin safety."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Caller

HUGE = "9223372036854775808"  # 2**63: one past what SQLite and PostgreSQL store
CSV = b"age,bmi,outcome\n" + b"".join(f"{30 + i},{20 + i % 7},{i % 2}\n".encode() for i in range(40))
JOB = {"model_type": "alzheimer_classifier", "dataset_source": "synthetic_test_data"}


def problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["success"] is False and body["error"]["code"] == code and body["status"] == status
    assert body["type"] == f"urn:bastion:error:{code}" and body["detail"] == body["error"]["message"]


def test_integers_past_the_database_are_422_not_500(client: TestClient, alice: Caller, admin: Caller) -> None:
    job = client.post("/api/v1/training/submit", json=JOB, headers=alice.headers).json()["job_id"]
    problem(
        client.get(f"/api/v1/training/jobs/{job}/logs?after={HUGE}", headers=alice.headers),
        422,
        "validation_error",
    )
    problem(
        client.get(f"/api/v1/training/jobs/{job}/events?after={HUGE}", headers=alice.headers),
        422,
        "validation_error",
    )
    problem(client.get("/api/v1/admin/audit?cursor=WyIxIl0", headers=admin.headers), 422, "invalid_cursor")
    problem(
        client.get("/api/v1/admin/audit?cursor=" + "A" * 40, headers=admin.headers), 422, "invalid_cursor"
    )
    # a cursor holding a number past the column: refused before it reaches the driver
    import base64

    huge_cursor = base64.urlsafe_b64encode(f"[{HUGE}]".encode()).rstrip(b"=").decode()
    problem(
        client.get(f"/api/v1/admin/audit?cursor={huge_cursor}", headers=admin.headers), 422, "invalid_cursor"
    )


def test_event_stream_with_an_id_past_every_event_still_ends(client: TestClient, alice: Caller) -> None:
    job = client.post("/api/v1/training/submit", json=JOB, headers=alice.headers).json()["job_id"]
    client.post(f"/api/v1/training/cancel/{job}", headers=alice.headers)
    headers = {**alice.headers, "Last-Event-ID": "9" * 20}
    with client.stream("GET", f"/api/v1/training/jobs/{job}/events", headers=headers) as r:
        text = "".join(r.iter_text())
    assert r.status_code == 200 and "event: end" in text


def test_body_that_is_not_utf8_is_malformed_json(client: TestClient) -> None:
    r = client.post(
        "/api/v1/auth/login", content=b'{"username": "\xff"}', headers={"content-type": "application/json"}
    )
    problem(r, 422, "malformed_json")


def test_401_says_how_to_authenticate_and_405_lists_every_method(client: TestClient) -> None:
    r = client.get("/api/v1/auth/me")
    problem(r, 401, "missing_credentials")
    assert "Bearer" in r.headers["www-authenticate"]
    r = client.patch("/api/v1/training/download-key")
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}


def test_site_routes_authenticate_before_reading_the_body(client: TestClient, alice: Caller) -> None:
    r = client.post("/api/v1/federations/nope/site/register", json={"unexpected": 1})
    problem(r, 401, "missing_credentials")
    assert "fields" not in r.json()["error"]
    assert "bastion-site" in r.headers["www-authenticate"]


def test_idempotent_submit(client: TestClient, alice: Caller, bob: Caller) -> None:
    headers = {**alice.headers, "Idempotency-Key": "retry-1"}
    first = client.post("/api/v1/training/submit", json=JOB, headers=headers)
    again = client.post("/api/v1/training/submit", json=JOB, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["job_id"] == again.json()["job_id"] and again.headers["idempotent-replayed"] == "true"
    jobs = client.get("/api/v1/training/jobs?limit=100", headers=alice.headers).json()["jobs"]
    assert [j["job_id"] for j in jobs] == [first.json()["job_id"]], "one job, not two"
    other = client.post("/api/v1/training/submit", json={**JOB, "seed": 1}, headers=headers)
    problem(other, 409, "idempotency_key_reused")
    # keys are per caller: bob's "retry-1" is his own
    bobs = client.post(
        "/api/v1/training/submit", json=JOB, headers={**bob.headers, "Idempotency-Key": "retry-1"}
    )
    assert bobs.status_code == 200 and bobs.json()["job_id"] != first.json()["job_id"]


def test_create_answers_201_with_location_and_replays(client: TestClient, alice: Caller) -> None:
    headers = {**alice.headers, "Idempotency-Key": "upload-1"}
    files = {"file": ("cohort.csv", CSV, "text/csv")}
    first = client.post("/api/v1/datasets", files=files, data={"name": "c"}, headers=headers)
    assert first.status_code == 201, first.text
    location = first.headers["location"]
    assert location == f"/api/v1/datasets/{first.json()['id']}"
    again = client.post("/api/v1/datasets", files=files, data={"name": "c"}, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == location
    assert client.get(location, headers=alice.headers).json()["id"] == first.json()["id"]
    assert len(client.get("/api/v1/datasets", headers=alice.headers).json()["data"]) == 1


def test_repeated_deletes_answer_alike(client: TestClient, alice: Caller, bob: Caller) -> None:
    files = {"file": ("cohort.csv", CSV, "text/csv")}
    ds = client.post("/api/v1/datasets", files=files, headers=alice.headers).json()["id"]
    first = client.delete(f"/api/v1/datasets/{ds}", headers=alice.headers)
    again = client.delete(f"/api/v1/datasets/{ds}", headers=alice.headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert client.get(f"/api/v1/datasets/{ds}", headers=alice.headers).status_code == 404
    assert client.delete(f"/api/v1/datasets/{ds}", headers=bob.headers).status_code == 404, "foreign: 404"
    key = client.post("/api/v1/auth/keys", json={"name": "x"}, headers=alice.headers)
    assert key.status_code == 201 and key.headers["location"].endswith(key.json()["id"])
    kid = key.json()["id"]
    first = client.delete(f"/api/v1/auth/keys/{kid}", headers=alice.headers)
    again = client.delete(f"/api/v1/auth/keys/{kid}", headers=alice.headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert client.get(f"/api/v1/auth/keys/{kid}", headers=bob.headers).status_code == 404
    for _ in range(2):
        assert client.delete("/api/v1/training/download-key", headers=alice.headers).status_code == 200


def test_lists_page_with_a_cursor(client: TestClient, alice: Caller) -> None:
    for i in range(4):
        client.post("/api/v1/auth/keys", json={"name": f"k{i}"}, headers=alice.headers)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/auth/keys", params=params, headers=alice.headers).json()
        assert len(page["data"]) <= 2
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5, "the fixture's key and four more, each once"
    every = client.get("/api/v1/auth/keys", headers=alice.headers).json()
    assert [k["id"] for k in every["data"]] == seen and every["next_cursor"] is None
    assert all(k["created_at"].endswith(("Z", "+00:00")) for k in every["data"]), "UTC offsets on the wire"


def test_training_jobs_keep_their_shape_and_gain_a_cursor(client: TestClient, alice: Caller) -> None:
    ids = [
        client.post("/api/v1/training/submit", json=JOB, headers=alice.headers).json()["job_id"]
        for _ in range(3)
    ]
    first = client.get("/api/v1/training/jobs?limit=2", headers=alice.headers).json()
    second = client.get(
        f"/api/v1/training/jobs?limit=2&cursor={first['next_cursor']}", headers=alice.headers
    ).json()
    listed = [j["job_id"] for j in first["jobs"] + second["jobs"]]
    assert sorted(listed) == sorted(ids) and second["next_cursor"] is None


def test_price_patch_keeps_other_profiles(client: TestClient, admin: Caller) -> None:
    before = client.get("/api/v1/admin/training/prices", headers=admin.headers).json()["prices"]
    r = client.patch(
        "/api/v1/admin/training/prices",
        json={"prices": {"tpu-x": {"hourly_cost": 2.5}, "cpu-large": None}},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    after = r.json()["prices"]
    assert set(after) == set(before) - {"cpu-large"} | {"tpu-x"}
    assert after["cpu-small"] == before["cpu-small"]
    bad = client.patch(
        "/api/v1/admin/training/prices", json={"prices": {"x": {"hourly_cost": False}}}, headers=admin.headers
    )
    problem(bad, 422, "validation_error")


def test_the_last_admin_stays_and_own_changes_reauthenticate(
    client: TestClient, make_caller: Callable[..., Caller]
) -> None:
    boss = make_caller("admin", "boss", password="a long enough password")
    r = client.patch(f"/api/v1/admin/users/{boss.user_id}", json={"role": "user"}, headers=boss.headers)
    problem(r, 403, "reauthentication_required")
    r = client.patch(
        f"/api/v1/admin/users/{boss.user_id}",
        json={"role": "user", "current_password": "a long enough password"},
        headers=boss.headers,
    )
    problem(r, 409, "last_admin")
    r = client.patch(f"/api/v1/admin/users/{boss.user_id}", json={"disabled": True}, headers=boss.headers)
    problem(r, 409, "last_admin")
    second = make_caller("admin", "deputy")
    r = client.patch(f"/api/v1/admin/users/{boss.user_id}", json={"disabled": True}, headers=second.headers)
    assert r.status_code == 200 and r.json()["disabled"] is True, "another admin remains"
    r = client.patch(f"/api/v1/admin/users/{second.user_id}", json={"role": "user"}, headers=second.headers)
    problem(r, 403, "reauthentication_required")


def test_user_routes_for_admins_only(client: TestClient, alice: Caller, admin: Caller) -> None:
    problem(
        client.get(f"/api/v1/admin/users/{alice.user_id}", headers=alice.headers), 403, "insufficient_role"
    )
    user = client.get(f"/api/v1/admin/users/{alice.user_id}", headers=admin.headers).json()
    assert user["username"] == "alice" and user["created_at"].endswith(("Z", "+00:00"))
