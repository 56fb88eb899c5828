"""End to end, identifiers planted in an Excel upload must not leak: not into the database (any
table), not into the vault's decrypted contents other than as scrubbed or pseudonymised text, not into
any response, and not into any downloaded model artifact of jobs trained on the table."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bastion.client import open_download
from bastion.context import Context
from tests.api.test_training_routes import wait_status
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory

PATIENTS = ["Peter Mensah", "Abena Owusu", "Kwame Asante", "Maria Garcia", "John Smith", "Linda Johnson"]
DOCTORS = ["Dr. Robert Brown", "Dr. Susan Miller", "Dr. James Wilson"]
SSNS = [f"{100 + i}-45-{6700 + i}" for i in range(6)]
MRNS = [f"MRN{90210 + i}" for i in range(6)]


def planted() -> list[str]:
    """Every planted string, plus the parts a leak could show (surnames, digits-only SSNs)."""
    out = [*PATIENTS, *DOCTORS, *SSNS, *MRNS]
    out += [p.split()[-1] for p in PATIENTS + DOCTORS]
    out += [s.replace("-", "") for s in SSNS]
    return out


def excel_upload(n: int = 120) -> bytes:
    import pandas as pd

    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        p = i % len(PATIENTS)
        mmse = int(rng.integers(10, 30))
        rows.append(
            {
                "col3": PATIENTS[p],  # names under a column name that says nothing
                "mrn": MRNS[p],
                "attending": DOCTORS[i % len(DOCTORS)],  # low cardinality: would be one-hot encoded
                "notes": f"Seen by {DOCTORS[i % 3]} with {PATIENTS[p]} (SSN {SSNS[p]}), visit {i}; stable.",
                "age": int(rng.integers(60, 95)),
                "mmse": mmse,
                "cdr": 1 if mmse < 22 else 0,
            }
        )
    buf = io.BytesIO()
    pd.DataFrame(rows).to_excel(buf, index=False)
    return buf.getvalue()


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def _assert_clean(blob: bytes, where: str) -> None:
    for needle in planted():
        assert needle.encode() not in blob, f"{needle!r} leaked into {where}"


def _database_dump(ctx: Context) -> bytes:
    from bastion.backup.database import tables

    parts = []
    with ctx.db.engine.connect() as conn:
        for table in tables():
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):  # noqa: S608 - our table names
                parts.append(json.dumps([str(v) for v in row]))
    return "\n".join(parts).encode()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_planted_identifiers_reach_no_store_response_or_model(
    api: ApiFactory, ctx: Context, alice: Caller
) -> None:
    client: TestClient = api("bastion.jobs.runner:run_training")
    r = client.post(
        "/api/v1/datasets",
        files={"file": ("cohort.xlsx", excel_upload(), "application/octet-stream")},
        data={"name": "cohort"},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    _assert_clean(r.content, "the upload response")
    report = {a["column"]: a for a in ds["deidentification"]}
    assert report["col3"]["action"] == "drop" and report["col3"]["detected_by"] == "values"
    assert report["attending"]["action"] == "drop"
    assert report["notes"]["action"] == "scrub" and report["notes"]["details"]["scrubbed"]["NAME"] > 0
    assert report["mrn"]["action"] == "pseudonymize"
    assert all(a.get("details", {}).get("reason") for a in ds["deidentification"]), "every column says why"

    preview = client.get(f"/api/v1/datasets/{ds['id']}/preview", params={"limit": 50}, headers=alice.headers)
    assert preview.status_code == 200
    _assert_clean(preview.content, "the preview")
    assert "[NAME]" in preview.text and "[SSN]" in preview.text

    downloads: list[bytes] = []
    for model_type, params in (
        ("alzheimer_classifier", {"estimator": "random_forest", "importance_repeats": 0}),
        ("adaptive_neural_net", {"epochs": 2, "hidden_layers": [8], "importance_repeats": 0}),
    ):
        r = client.post(
            "/api/v1/training/submit",
            json={
                "model_type": model_type,
                "dataset_source": "user_provided",
                "dataset_id": ds["id"],
                "target": "cdr",
                "params": params,
            },
            headers=alice.headers,
        )
        assert r.status_code == 200, r.text
        done = wait_status(client, alice, r.json()["job_id"], "completed", "failed", timeout=180)
        assert done["status"] == "completed", done["error_message"]
        dropped = done["results"]["dataset"]["dropped_columns"]
        assert "free text" in dropped["notes"] and "identifier" in dropped["mrn"]
        _assert_clean(json.dumps(done).encode(), "the job status")
        body = client.get(f"/api/v1/training/model/{done['job_id']}", headers=alice.headers).json()
        model = open_download(body, api_key=alice.key)
        downloads += [model.model_bytes, json.dumps(model.model_config).encode()]
        assert "notes" not in model.model_config["feature_names"]
        assert "mrn" not in model.model_config["feature_names"]
    for name in (m["name"] for m in client.get("/api/v1/models", headers=alice.headers).json()["data"]):
        body = client.get(f"/api/v1/models/{name}/download", headers=alice.headers).json()
        model = open_download(body, api_key=alice.key)
        downloads += [model.model_bytes, json.dumps(model.model_config).encode()]
        _assert_clean(client.get(f"/api/v1/models/{name}", headers=alice.headers).content, "the registry")
    for i, blob in enumerate(downloads):
        _assert_clean(blob, f"downloaded artifact {i}")

    # the database, every table, and every decrypted vault artifact
    _assert_clean(_database_dump(ctx), "the database")
    for artifact in ctx.vault.list():
        _assert_clean(ctx.vault.get_bytes(artifact), f"vault artifact {artifact}")
    _assert_clean(client.get("/api/v1/datasets", headers=alice.headers).content, "the dataset list")
    _assert_clean(
        client.get(f"/api/v1/datasets/{ds['id']}", headers=alice.headers).content, "the dataset record"
    )


def test_plain_dataset_columns_hold_no_values(client: TestClient, ctx: Context, alice: Caller) -> None:
    import pandas as pd

    frame = pd.DataFrame({"diagnosis": ["Demented", "Nondemented"] * 10, "mmse": list(range(20))})
    r = client.post(
        "/api/v1/datasets",
        files={"file": ("d.csv", frame.to_csv(index=False).encode(), "application/octet-stream")},
        headers=alice.headers,
    )
    assert r.status_code == 201
    stats = {c["name"]: c for c in r.json()["schema"]}
    assert {t["value"] for t in stats["diagnosis"]["top"]} == {"Demented", "Nondemented"}
    assert stats["mmse"]["max"] == 19
    from sqlalchemy import text

    with ctx.db.session() as s:  # the text the column holds, not the decoded value
        plain = s.execute(
            text("SELECT schema_json FROM datasets WHERE id = :i"), {"i": r.json()["id"]}
        ).scalar_one()
    assert "Nondemented" not in plain and '"max"' not in plain and '"top"' not in plain
    # the API still shows them, from the vault
    again = client.get(f"/api/v1/datasets/{r.json()['id']}", headers=alice.headers).json()
    assert {c["name"]: c for c in again["schema"]}["diagnosis"]["top"]
