"""What every request gets: size limits, clear errors, security headers, metrics, health."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from bastion.api.app import create_app
from bastion.context import build_context
from tests.conftest import Caller, make_settings


def test_health_reports_components(client: TestClient) -> None:
    body = client.get("/api/v1/health").json()
    assert body["status"] == "healthy" and body["version"]
    assert body["components"]["api"] == "operational"
    assert body["components"]["database"] == "operational"
    assert set(body) == {"status", "timestamp", "version", "components"}


def test_health_is_unhealthy_when_the_database_is_gone(tmp_path: Path) -> None:
    ctx = build_context(make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}"))
    ctx.health_checks["database"] = lambda: False
    with TestClient(create_app(context=ctx)) as c:
        r = c.get("/api/v1/health")
    assert r.status_code == 503 and r.json()["components"]["database"] == "unavailable"


def test_oversized_body_is_413(client: TestClient, admin: Caller) -> None:
    big = "x" * (2 * 1024 * 1024)
    r = client.post(
        "/api/v1/admin/users", content=big, headers={**admin.headers, "content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_oversized_chunked_body_is_413(client: TestClient, admin: Caller) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536

    r = client.post(
        "/api/v1/admin/users", content=chunks(), headers={**admin.headers, "content-type": "application/json"}
    )
    assert r.status_code == 413


def test_malformed_json_is_422(client: TestClient, admin: Caller) -> None:
    r = client.post(
        "/api/v1/admin/users",
        content=b'{"username": ',
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "malformed_json"


def test_validation_errors_never_echo_input(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "", "password": "hunter2-secret"})
    assert r.status_code == 422
    assert "hunter2-secret" not in r.text


def test_unknown_route_is_404_json(client: TestClient) -> None:
    r = client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_security_headers(client: TestClient) -> None:
    r = client.get("/api/v1/health")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"]


def test_openapi_docs_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/v1/auth/login" in spec["paths"]


def test_metrics_count_requests_by_route(client: TestClient, alice: Caller) -> None:
    client.get("/api/v1/auth/me", headers=alice.headers)
    text = client.get("/metrics").text
    assert 'bastion_http_requests_total{method="GET",route="/api/v1/auth/me",status="200"}' in text
    assert "bastion_http_request_duration_seconds_bucket" in text


def test_state_changing_requests_are_audited(client: TestClient, admin: Caller) -> None:
    client.post("/api/v1/admin/users", json={"username": "zed"}, headers=admin.headers)
    events = client.get("/api/v1/admin/audit", headers=admin.headers).json()["data"]
    actions = {e["action"] for e in events}
    assert {"user.create", "http.post"} <= actions


def test_audit_page_and_filters(client: TestClient, admin: Caller) -> None:
    for i in range(5):
        client.post("/api/v1/admin/users", json={"username": f"p{i}"}, headers=admin.headers)
    first = client.get("/api/v1/admin/audit", params={"limit": 3}, headers=admin.headers).json()
    assert len(first["data"]) == 3 and first["next_cursor"]
    second = client.get(
        "/api/v1/admin/audit", params={"limit": 3, "cursor": first["next_cursor"]}, headers=admin.headers
    ).json()
    assert max(e["seq"] for e in second["data"]) < min(e["seq"] for e in first["data"])
    only = client.get("/api/v1/admin/audit", params={"action": "user.create"}, headers=admin.headers).json()
    assert {e["action"] for e in only["data"]} == {"user.create"}


def test_log_redaction_covers_keys_site_tokens_and_jwts() -> None:
    from bastion.logs import redact_text

    line = (
        "GET /x?api_key=bst_"
        + "a" * 38
        + " site bsp_"
        + "b" * 30
        + " jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.c2lnbmF0dXJl"
    )
    out = redact_text(line)
    assert "bst_a" not in out and "bsp_b" not in out and "eyJzdWIi" not in out
    assert out.count("[redacted]") == 3
