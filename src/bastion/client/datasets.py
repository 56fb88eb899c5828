"""Uploaded datasets, as the SDK's ``client.datasets`` namespace.

info = client.datasets.upload("visits.csv", policy={"dob": "year"})   # de-identified on the server
client.datasets.preview(info["id"], limit=5)
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

from bastion.client.transport import Transport, operation

BASE = "/api/v1/datasets"


def code_header(code: str | None) -> dict[str, str] | None:
    """The ``X-Access-Code`` header of objects guarded by an access code (datasets and models)."""
    return {"X-Access-Code": code} if code else None


def every(transport: Transport, path: str, project: str | None) -> builtins.list[dict[str, Any]]:
    """Every item of a catalog collection (all pages), one project's with ``project``."""
    return transport.pages(path, {"limit": 500, **({"project": project} if project else {})})


class Datasets:
    """Your datasets: upload (the server de-identifies before storing), review, guard, delete."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("POST", "/api/v1/datasets")
    def upload(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        policy: dict[str, Any] | str | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:
        """Upload a CSV/JSON/Excel/Parquet file (into ``project``, default your personal one); the
        server de-identifies it before storing it."""
        file = Path(path)
        data: dict[str, str] = {"name": name or file.name}
        if policy is not None:
            data["policy"] = policy if isinstance(policy, str) else json.dumps(policy)
        with file.open("rb") as fh:
            result: dict[str, Any] = self.t.json(
                "POST",
                BASE,
                files={"file": (file.name, fh, "application/octet-stream")},
                data=data,
                params={"project": project} if project else None,
            )
        return result

    @operation("GET", "/api/v1/datasets")
    def list(self, project: str | None = None) -> builtins.list[dict[str, Any]]:
        return every(self.t, BASE, project)

    @operation("GET", "/api/v1/datasets/{dataset_id}")
    def get(self, dataset_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.t.json("GET", f"{BASE}/{dataset_id}")
        return result

    @operation("DELETE", "/api/v1/datasets/{dataset_id}")
    def delete(self, dataset_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.t.json("DELETE", f"{BASE}/{dataset_id}")
        return result

    @operation("GET", "/api/v1/datasets/{dataset_id}/preview")
    def preview(self, dataset_id: str, *, limit: int = 20, access_code: str | None = None) -> dict[str, Any]:
        """The first stored (de-identified) rows and the per-column report, for review."""
        result: dict[str, Any] = self.t.json(
            "GET", f"{BASE}/{dataset_id}/preview", params={"limit": limit}, headers=code_header(access_code)
        )
        return result

    @operation("PUT", "/api/v1/datasets/{dataset_id}/access-code")
    def set_access_code(self, dataset_id: str, code: str, *, current: str | None = None) -> dict[str, Any]:
        """Set (or, with ``current``, change) the code that reading this dataset then requires."""
        result: dict[str, Any] = self.t.json(
            "PUT",
            f"{BASE}/{dataset_id}/access-code",
            json={"access_code": code},
            headers=code_header(current),
        )
        return result

    @operation("DELETE", "/api/v1/datasets/{dataset_id}/access-code")
    def remove_access_code(self, dataset_id: str, *, current: str) -> dict[str, Any]:
        result: dict[str, Any] = self.t.json(
            "DELETE", f"{BASE}/{dataset_id}/access-code", headers=code_header(current)
        )
        return result
