"""Datasets and the model registry, as SDK methods (mixed into BastionClient)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.client.transport import operation


class CatalogMixin:
    """Needs ``_request(method, path, **httpx_kwargs)`` from the client it is mixed into."""

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - provided
        raise NotImplementedError

    def _pages(self, path: str) -> list[dict[str, Any]]:
        """Every item of a paged collection (follows next_cursor)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self._request("GET", path, params={"limit": 500, **({"cursor": cursor} if cursor else {})})
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    @operation("POST", "/api/v1/datasets")
    def upload_dataset(
        self, path: str | Path, *, name: str | None = None, policy: dict[str, Any] | str | None = None
    ) -> dict[str, Any]:
        """Upload a CSV/JSON/Excel/Parquet file; the server de-identifies it before storing it."""
        file = Path(path)
        data: dict[str, str] = {"name": name or file.name}
        if policy is not None:
            data["policy"] = policy if isinstance(policy, str) else json.dumps(policy)
        with file.open("rb") as fh:
            result: dict[str, Any] = self._request(
                "POST",
                "/api/v1/datasets",
                files={"file": (file.name, fh, "application/octet-stream")},
                data=data,
            )
        return result

    @operation("GET", "/api/v1/datasets")
    def list_datasets(self) -> list[dict[str, Any]]:
        return self._pages("/api/v1/datasets")

    @operation("GET", "/api/v1/datasets/{dataset_id}")
    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/datasets/{dataset_id}")
        return result

    @operation("DELETE", "/api/v1/datasets/{dataset_id}")
    def delete_dataset(self, dataset_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("DELETE", f"/api/v1/datasets/{dataset_id}")
        return result

    @operation("GET", "/api/v1/models")
    def list_models(self) -> list[dict[str, Any]]:
        return self._pages("/api/v1/models")

    @operation("GET", "/api/v1/models/{model_id}")
    def get_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/models/{model_id}")
        return result

    @operation("GET", "/api/v1/models/{model_id}/best")
    def best_model(self, model_id: str, metric: str | None = None) -> dict[str, Any]:
        params = {"metric": metric} if metric else None
        result: dict[str, Any] = self._request("GET", f"/api/v1/models/{model_id}/best", params=params)
        return result

    @operation("POST", "/api/v1/models/{model_id}/predict")
    def predict_registered(
        self,
        model_id: str,
        rows: list[dict[str, Any]],
        *,
        version: int | None = None,
        probabilities: bool = False,
        access_code: str | None = None,
    ) -> dict[str, Any]:
        headers = {"X-Access-Code": access_code} if access_code else None
        body = {"rows": rows, "version": version, "probabilities": probabilities}
        result: dict[str, Any] = self._request(
            "POST", f"/api/v1/models/{model_id}/predict", json=body, headers=headers
        )
        return result

    @operation("POST", "/api/v1/models/{model_id}/quantize")
    def quantize_model(
        self,
        model_id: str,
        *,
        version: int | None = None,
        access_code: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """A new int8 version of a PyTorch model, with size and accuracy before and after."""
        headers = {
            k: v for k, v in (("X-Access-Code", access_code), ("Idempotency-Key", idempotency_key)) if v
        }
        result: dict[str, Any] = self._request(
            "POST", f"/api/v1/models/{model_id}/quantize", json={"version": version}, headers=headers
        )
        return result
