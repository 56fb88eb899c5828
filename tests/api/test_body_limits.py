"""Body limits: the upload limit only on upload routes, 1 MiB on JSON, site credentials before the body."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Caller

TINY = {"type": "tabular_mlp", "in_features": 4, "num_classes": 2, "hidden": [3]}
MIB = 2**20


def _json_of(size: int) -> bytes:
    return json.dumps({"name": "x", "padding": "p" * size}).encode()


def test_json_routes_under_upload_prefixes_get_the_json_limit(
    client: TestClient, alice: Caller, viewer: Caller
) -> None:
    big = _json_of(2 * MIB)
    for path, caller in [
        ("/api/v1/federations", alice),
        ("/api/v1/federations/x/participants", alice),
        ("/api/v1/models/x/predict", viewer),
        ("/api/v1/models/x/quantize", alice),
        ("/api/v1/federations/x/site/register", None),
        ("/api/v1/federations/x/site/secagg/advertise", None),
    ]:
        headers = {"content-type": "application/json", **(caller.headers if caller else {})}
        r = client.post(path, content=big, headers=headers)
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert r.json()["error"]["code"] == "payload_too_large"


def test_upload_routes_keep_the_upload_limit(client: TestClient, alice: Caller) -> None:
    data = b"age,score\n" + b"30,1\n" * (300_000)  # 1.5 MB: over the JSON limit, far under the upload one
    r = client.post("/api/v1/datasets", content=data, headers={**alice.headers, "content-type": "text/csv"})
    assert r.status_code == 201, r.text


def test_site_credentials_are_checked_before_the_body_is_read(client: TestClient, alice: Caller) -> None:
    fid = client.post(
        "/api/v1/federations",
        json={"name": "f", "model": TINY, "rounds": 1, "min_clients": 1},
        headers=alice.headers,
    ).json()["id"]
    app: Any = client.app
    body = json.dumps({"signing_public_key": "k" * 43, "pad": "p" * 500_000}).encode()
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    def call(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
        consumed = 0
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal consumed
            if consumed < len(chunks):
                consumed += 1
                return {
                    "type": "http.request",
                    "body": chunks[consumed - 1],
                    "more_body": consumed < len(chunks),
                }
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), *headers],
            "client": ("198.51.100.7", 1234),
            "server": ("testserver", 80),
        }
        client.portal.call(app, scope, receive, send)  # type: ignore[union-attr]
        return sent[0]["status"], consumed

    for path in (
        f"/api/v1/federations/{fid}/site/register",
        f"/api/v1/federations/{fid}/site/secagg/advertise",
    ):
        status, consumed = call(path, [])
        assert (status, consumed) == (401, 0), path
        status, consumed = call(path, [(b"authorization", b"Bearer bsp_" + b"x" * 40)])
        assert (status, consumed) == (401, 0), path
