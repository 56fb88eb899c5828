"""The model registry (named models and their versions), as the SDK's ``client.models`` namespace.

client.models.predict("heart", [{"age": 61, ...}], probabilities=True)
client.models.predict_encrypted("heart", rows)          # CKKS: the server never sees rows or results
client.models.download("heart", version=2).save("heart.skops")
"""

from __future__ import annotations

import builtins
from typing import Any

from bastion.client.datasets import code_header, every
from bastion.client.modelfile import DownloadedModel, open_download
from bastion.client.transport import Transport, operation

BASE = "/api/v1/models"


class Models:
    """Registered models: look up, predict (plain or encrypted), guard, quantize, download."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("GET", "/api/v1/models")
    def list(self, project: str | None = None) -> builtins.list[dict[str, Any]]:
        return every(self.t, BASE, project)

    @operation("GET", "/api/v1/models/{model_id}")
    def get(self, model_id: str) -> dict[str, Any]:
        """The model with its versions (newest first) and their metrics."""
        result: dict[str, Any] = self.t.json("GET", f"{BASE}/{model_id}")
        return result

    @operation("GET", "/api/v1/models/{model_id}/best")
    def best(self, model_id: str, metric: str | None = None) -> dict[str, Any]:
        """The version that scores best on ``metric`` (default: the model's own headline metric)."""
        params = {"metric": metric} if metric else None
        result: dict[str, Any] = self.t.json("GET", f"{BASE}/{model_id}/best", params=params)
        return result

    @operation("POST", "/api/v1/models/{model_id}/predict")
    def predict(
        self,
        model_id: str,
        rows: builtins.list[dict[str, Any]],
        *,
        version: int | None = None,
        probabilities: bool = False,
        access_code: str | None = None,
    ) -> dict[str, Any]:
        body = {"rows": rows, "version": version, "probabilities": probabilities}
        result: dict[str, Any] = self.t.json(
            "POST", f"{BASE}/{model_id}/predict", json=body, headers=code_header(access_code)
        )
        return result

    @operation("PUT", "/api/v1/models/{model_id}/access-code")
    def set_access_code(
        self, model_id: str, code: str, *, current: str | None = None, version: int | None = None
    ) -> dict[str, Any]:
        """Set (or, with ``current``, change) the code on every version or on ``version``."""
        result: dict[str, Any] = self.t.json(
            "PUT",
            f"{BASE}/{model_id}/access-code",
            json={"access_code": code, "version": version},
            headers=code_header(current),
        )
        return result

    @operation("DELETE", "/api/v1/models/{model_id}/access-code")
    def remove_access_code(
        self, model_id: str, *, current: str, version: int | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.t.json(
            "DELETE",
            f"{BASE}/{model_id}/access-code",
            params={"version": version} if version else None,
            headers=code_header(current),
        )
        return result

    @operation("POST", "/api/v1/models/{model_id}/quantize")
    def quantize(
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
        result: dict[str, Any] = self.t.json(
            "POST", f"{BASE}/{model_id}/quantize", json={"version": version}, headers=headers
        )
        return result

    @operation("GET", "/api/v1/models/{model_id}/download")
    def download(
        self,
        model_id: str,
        *,
        version: int | None = None,
        access_code: str | None = None,
        private_key: Any = None,
    ) -> DownloadedModel:
        """Fetch a registered version (quantized ones too) and decrypt it here, like a job download."""
        params: dict[str, Any] = {"scheme": "x25519" if private_key is not None else "api-key"}
        if version:
            params["version"] = version
        body = self.t.json(
            "GET", f"{BASE}/{model_id}/download", params=params, headers=code_header(access_code)
        )
        return open_download(body, api_key=self.t.api_key, private_key=private_key)

    @operation("GET", "/api/v1/models/{model_id}/encrypted/spec")
    def encryption_spec(
        self, model_id: str, *, version: int | None = None, access_code: str | None = None
    ) -> dict[str, Any]:
        """A model's input layout, CKKS parameters and link function for encrypted predictions."""
        params = {"version": version} if version else None
        result: dict[str, Any] = self.t.json(
            "GET", f"{BASE}/{model_id}/encrypted/spec", params=params, headers=code_header(access_code)
        )
        return result

    @operation("POST", "/api/v1/models/{model_id}/predict/encrypted")
    def predict_encrypted(
        self,
        model_id: str,
        rows: builtins.list[dict[str, Any]],
        *,
        version: int | None = None,
        access_code: str | None = None,
    ) -> dict[str, Any]:
        """Predict without the server seeing the rows or the results (CKKS; the key stays here).

        Returns the same shape as :meth:`predict` (predictions, classes, probabilities for
        classifiers) plus ``scores`` (the decrypted model outputs) and the sizes and server time.
        """
        from bastion.client import he  # numpy (and TenSEAL) only when encrypting: the CLI starts lighter

        spec = self.encryption_spec(model_id, version=version, access_code=access_code)
        matrix = he.encode_rows(spec["inputs"], rows)
        batch = he.encrypt(spec, matrix, version=spec["version"])
        response: dict[str, Any] = self.t.json(
            "POST",
            f"{BASE}/{model_id}/predict/encrypted",
            json=batch.request,
            headers=code_header(access_code),
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
