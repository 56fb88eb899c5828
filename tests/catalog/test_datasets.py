"""Dataset uploads: formats, de-identification before storage, limits, scoping, no plaintext at rest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion.api.app import create_app
from bastion.context import Context, build_context
from tests.conftest import Caller, make_settings

NAMES = ["Margaret Holloway", "Theodore Quill", "Beatrix Vance", "Cornelius Ashby"]
SSNS = ["123-45-6789", "987-65-4321", "555-12-3456", "222-33-4444"]
EMAILS = ["mholloway@example.org", "tq@example.net", "bvance@example.com", "cash@example.org"]


def patient_csv() -> bytes:
    lines = ["patient_name,ssn,email,zip,date_of_birth,age,mmse,cdr"]
    for i, (n, s, e) in enumerate(zip(NAMES, SSNS, EMAILS, strict=True)):
        lines.append(f"{n},{s},{e},0213{i},1950-0{i + 1}-1{i},{70 + i * 8},{25 + i},{0.5 * (i % 2)}")
    return ("\n".join(lines) + "\n").encode()


def upload(client: TestClient, caller: Caller, data: bytes, name: str = "cohort.csv", **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/datasets",
        files={"file": (name, data, "application/octet-stream")},
        data=form,
        headers=caller.headers,
    )


def test_upload_deidentifies_and_reports(client: TestClient, alice: Caller) -> None:
    r = upload(client, alice, patient_csv())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["rows"] == 4 and body["format"] == "csv"
    actions = {a["column"]: a["action"] for a in body["deidentification"]}
    assert actions["patient_name"] == "drop" and actions["ssn"] == "drop" and actions["email"] == "drop"
    assert actions["zip"] == "generalize" and actions["date_of_birth"] == "generalize"
    assert {c["name"] for c in body["schema"]} >= {"mmse", "cdr", "zip", "age"}
    text = json.dumps(body)
    assert not any(s in text for s in NAMES + SSNS + EMAILS)


def test_no_plaintext_identifier_anywhere_in_the_data_dir(
    client: TestClient, ctx: Context, alice: Caller
) -> None:
    assert upload(client, alice, patient_csv()).status_code == 201
    # keep-policy still never leaves plaintext: the vault encrypts whatever is kept
    assert (
        upload(client, alice, patient_csv(), policy=json.dumps({"columns": {"mmse": "keep"}})).status_code
        == 201
    )
    blobs = b"".join(p.read_bytes() for p in Path(ctx.settings.data_dir).rglob("*") if p.is_file())
    if ctx.db.dialect == "sqlite":
        assert Path(ctx.settings.resolved_database_url.split("///")[1]).exists()
    for secret in NAMES + SSNS + EMAILS:
        assert secret.encode() not in blobs, f"{secret} found in plaintext at rest"


def test_formats_are_sniffed_from_content(client: TestClient, alice: Caller) -> None:
    import pandas as pd

    frame = pd.DataFrame({"mmse": [20, 25, 30], "cdr": [1.0, 0.5, 0.0]})
    parquet, excel = io.BytesIO(), io.BytesIO()
    frame.to_parquet(parquet)
    frame.to_excel(excel, index=False)
    for data, fmt, misleading in (
        (parquet.getvalue(), "parquet", "x.csv"),
        (excel.getvalue(), "excel", "x.json"),
        (frame.to_json(orient="records").encode(), "json", "x.xlsx"),
    ):
        r = upload(client, alice, data, name=misleading)
        assert r.status_code == 201, r.text
        assert r.json()["format"] == fmt


def test_raw_body_upload(client: TestClient, alice: Caller) -> None:
    r = client.post(
        "/api/v1/datasets",
        content=b"a,b\n1,2\n3,4\n",
        params={"name": "raw"},
        headers={**alice.headers, "content-type": "application/octet-stream"},
    )
    assert r.status_code == 201 and r.json()["name"] == "raw"


def test_bad_uploads_get_clear_4xx(client: TestClient, alice: Caller) -> None:
    cases = {
        "formula": (b'name_code,value\n=HYPERLINK("http://x"),1\nok,2\n', 422, "formula_injection"),
        "encoding": ("a,b\nM\u00fcller,1\n".encode("latin-1"), 422, "bad_encoding"),
        "huge cell": (b"a,b\n" + b"x" * 200_000 + b",1\n", 422, "cell_too_large"),
        "binary": (b"\x00\x01\x02\x03" * 100, 415, None),
    }
    for label, (data, status, code) in cases.items():
        r = upload(client, alice, data)
        assert r.status_code == status, (label, r.text)
        if code:
            assert r.json()["error"]["code"] == code, label
    bad_policy = upload(client, alice, b"a,b\n1,2\n", policy='{"nonsense": true}')
    assert bad_policy.status_code == 422


def test_upload_over_limit_is_413(tmp_path: Path, db_url: str) -> None:
    ctx = build_context(make_settings(tmp_path, db_url, max_upload_bytes=4096))
    user = ctx.accounts.create_user("u", "user")
    key = ctx.accounts.create_key(user.id).plaintext
    with TestClient(create_app(context=ctx)) as c:
        r = c.post(
            "/api/v1/datasets",
            files={"file": ("a.csv", b"a,b\n" + b"1,2\n" * 5000)},
            headers={"X-API-Key": key},
        )
    assert r.status_code == 413


def test_scoping_and_delete(client: TestClient, alice: Caller, bob: Caller, viewer: Caller) -> None:
    ds = upload(client, alice, b"a,b\n1,2\n").json()
    url = f"/api/v1/datasets/{ds['id']}"
    assert client.get(url, headers=bob.headers).status_code == 404
    assert client.delete(url, headers=bob.headers).status_code == 404
    assert client.get("/api/v1/datasets", headers=bob.headers).json()["data"] == []
    assert upload(client, viewer, b"a,b\n1,2\n").status_code == 403
    assert client.get(url, headers=alice.headers).status_code == 200
    assert client.delete(url, headers=alice.headers).status_code == 200
    assert client.get(url, headers=alice.headers).status_code == 404


def test_jobs_can_load_the_deidentified_frame(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller
) -> None:
    import pytest

    from bastion.errors import NotFound

    ds = upload(client, alice, patient_csv()).json()
    frame = ctx.services.datasets.load_frame(alice.user_id, ds["id"])
    assert "ssn" not in frame.columns and len(frame) == 4
    with pytest.raises(NotFound):
        ctx.services.datasets.load_frame(bob.user_id, ds["id"])


def test_multipart_upload_never_spools_plaintext_to_disk(
    client: TestClient, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from starlette import formparsers

    spooled: list[tempfile.SpooledTemporaryFile[bytes]] = []

    class Recording(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            spooled.append(self)

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", Recording)
    big = b"mmse,cdr\n" + b"25,0.5\n" * 400_000  # ~2.8 MB, well over Starlette's 1 MiB default
    assert upload(client, alice, big).status_code == 201
    assert spooled and not any(f._rolled for f in spooled), "the upload was written to a temp file"
