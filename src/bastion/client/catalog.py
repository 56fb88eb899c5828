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

    def _pages(self, path: str, project: str | None = None) -> list[dict[str, Any]]:
        """Every item of a paged collection (follows next_cursor); one project's with ``project``."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        scope = {"project": project} if project else {}
        while True:
            page = self._request(
                "GET", path, params={"limit": 500, **scope, **({"cursor": cursor} if cursor else {})}
            )
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    @operation("POST", "/api/v1/datasets")
    def upload_dataset(
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
            result: dict[str, Any] = self._request(
                "POST",
                "/api/v1/datasets",
                files={"file": (file.name, fh, "application/octet-stream")},
                data=data,
                params={"project": project} if project else None,
            )
        return result

    @operation("GET", "/api/v1/datasets")
    def list_datasets(self, project: str | None = None) -> list[dict[str, Any]]:
        return self._pages("/api/v1/datasets", project)

    @operation("GET", "/api/v1/datasets/{dataset_id}")
    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/datasets/{dataset_id}")
        return result

    @operation("DELETE", "/api/v1/datasets/{dataset_id}")
    def delete_dataset(self, dataset_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("DELETE", f"/api/v1/datasets/{dataset_id}")
        return result

    @operation("GET", "/api/v1/models")
    def list_models(self, project: str | None = None) -> list[dict[str, Any]]:
        return self._pages("/api/v1/models", project)

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

    # -- access codes, review, quantization, download ----------------------------------------------

    @operation("PUT", "/api/v1/models/{model_id}/access-code")
    def set_model_access_code(
        self, model_id: str, code: str, *, current: str | None = None, version: int | None = None
    ) -> dict[str, Any]:
        """Set (or, with ``current``, change) the code on every version or on ``version``."""
        result: dict[str, Any] = self._request(
            "PUT",
            f"/api/v1/models/{model_id}/access-code",
            json={"access_code": code, "version": version},
            headers=_code_header(current),
        )
        return result

    @operation("DELETE", "/api/v1/models/{model_id}/access-code")
    def remove_model_access_code(
        self, model_id: str, *, current: str, version: int | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "DELETE",
            f"/api/v1/models/{model_id}/access-code",
            params={"version": version} if version else None,
            headers=_code_header(current),
        )
        return result

    @operation("PUT", "/api/v1/datasets/{dataset_id}/access-code")
    def set_dataset_access_code(
        self, dataset_id: str, code: str, *, current: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "PUT",
            f"/api/v1/datasets/{dataset_id}/access-code",
            json={"access_code": code},
            headers=_code_header(current),
        )
        return result

    @operation("DELETE", "/api/v1/datasets/{dataset_id}/access-code")
    def remove_dataset_access_code(self, dataset_id: str, *, current: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "DELETE", f"/api/v1/datasets/{dataset_id}/access-code", headers=_code_header(current)
        )
        return result

    @operation("GET", "/api/v1/datasets/{dataset_id}/preview")
    def preview_dataset(
        self, dataset_id: str, *, limit: int = 20, access_code: str | None = None
    ) -> dict[str, Any]:
        """The first stored (de-identified) rows and the per-column report, for review."""
        result: dict[str, Any] = self._request(
            "GET",
            f"/api/v1/datasets/{dataset_id}/preview",
            params={"limit": limit},
            headers=_code_header(access_code),
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
        """A new int8 version of a PyTorch version, with size and held-out accuracy before and after."""
        headers = {
            k: v for k, v in (("X-Access-Code", access_code), ("Idempotency-Key", idempotency_key)) if v
        }
        result: dict[str, Any] = self._request(
            "POST", f"/api/v1/models/{model_id}/quantize", json={"version": version}, headers=headers
        )
        return result

    @operation("GET", "/api/v1/models/{model_id}/download")
    def download_model_version(
        self,
        model_id: str,
        *,
        version: int | None = None,
        access_code: str | None = None,
        private_key: Any = None,
    ) -> Any:
        """Fetch a registered version (quantized ones too) and decrypt it here, like a job download."""
        from bastion.client.modelfile import open_download

        params: dict[str, Any] = {"scheme": "x25519" if private_key is not None else "api-key"}
        if version:
            params["version"] = version
        body = self._request(
            "GET", f"/api/v1/models/{model_id}/download", params=params, headers=_code_header(access_code)
        )
        return open_download(body, api_key=getattr(self, "api_key", None), private_key=private_key)

    @operation("GET", "/api/v1/models/{model_id}/encrypted/spec")
    def encryption_spec(
        self, model_id: str, *, version: int | None = None, access_code: str | None = None
    ) -> dict[str, Any]:
        """A model's input layout, CKKS parameters and link function for encrypted predictions."""
        headers = {"X-Access-Code": access_code} if access_code else None
        params = {"version": version} if version else None
        result: dict[str, Any] = self._request(
            "GET", f"/api/v1/models/{model_id}/encrypted/spec", params=params, headers=headers
        )
        return result

    @operation("POST", "/api/v1/models/{model_id}/predict/encrypted")
    def predict_encrypted(
        self,
        model_id: str,
        rows: list[dict[str, Any]],
        *,
        version: int | None = None,
        access_code: str | None = None,
    ) -> dict[str, Any]:
        """Predict without the server seeing the rows or the results (CKKS; the key stays here).

        Returns the same shape as :meth:`predict_registered` (predictions, classes, probabilities
        for classifiers) plus ``scores`` (the decrypted model outputs) and the sizes and server time.
        """
        from bastion.client import he

        spec = self.encryption_spec(model_id, version=version, access_code=access_code)
        matrix = he.encode_rows(spec["inputs"], rows)
        batch = he.encrypt(spec, matrix, version=spec["version"])
        headers = {"X-Access-Code": access_code} if access_code else None
        response: dict[str, Any] = self._request(
            "POST", f"/api/v1/models/{model_id}/predict/encrypted", json=batch.request, headers=headers
        )
        scores = he.decrypt_scores(batch.context, response)
        out = he.apply_link(scores, spec["link"], spec["classes"])
        out.update(
            model_id=response["model_id"],
            version=response["version"],
            scores=scores.tolist(),
            encrypted=True,
            bytes_sent=batch.bytes_sent,
            server_seconds=response["server_seconds"],
        )
        return out


def _code_header(code: str | None) -> dict[str, str] | None:
    return {"X-Access-Code": code} if code else None
