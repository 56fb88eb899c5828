"""Coordinator calls for federations, over a :class:`~bastion.client.sdk.BastionClient`'s connection.

api = Federations(BastionClient(url, api_key))
fed = api.create({"name": "digits", "model": {...}, "rounds": 10, "min_clients": 5})
token = api.enroll(fed["id"], "hospital-a")["token"]   # shown once: hand it to the site
api.status(fed["id"]); api.rounds(fed["id"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from bastion.client.errors import TransportError, from_response

if TYPE_CHECKING:
    from bastion.client.sdk import BastionClient

BASE = "/api/v1/federations"


class Federations:
    def __init__(self, client: BastionClient) -> None:
        self.client = client

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        api_key = getattr(self.client, "api_key", None)
        headers = {**({"X-API-Key": api_key} if api_key else {}), **kwargs.pop("headers", {})}
        try:
            response = self.client.http.request(method, BASE + path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise TransportError(
                f"cannot reach {self.client.url}: {type(exc).__name__}", code="transport"
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise from_response(response.status_code, body, response.headers)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self._send(method, path, **kwargs).json()
        return body

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "", json=spec)

    def list_all(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "")["data"])

    def get(self, federation_id: str) -> dict[str, Any]:
        return self._json("GET", f"/{federation_id}")

    def status(self, federation_id: str) -> dict[str, Any]:
        return self._json("GET", f"/{federation_id}/status")

    def rounds(self, federation_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/{federation_id}/rounds")["data"])

    def enroll(self, federation_id: str, name: str) -> dict[str, Any]:
        return self._json("POST", f"/{federation_id}/participants", json={"name": name})

    def participants(self, federation_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/{federation_id}/participants")["data"])

    def revoke(self, federation_id: str, participant_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/{federation_id}/participants/{participant_id}")

    def download_model(self, federation_id: str) -> tuple[int, bytes]:
        """The current global model: its version and safetensors bytes."""
        response = self._send("GET", f"/{federation_id}/model")
        return int(response.headers.get("x-bastion-global-version", "0")), response.content

    def upload_model(self, federation_id: str, safetensors_bytes: bytes) -> dict[str, Any]:
        return self._json(
            "POST",
            f"/{federation_id}/model",
            content=safetensors_bytes,
            headers={"Content-Type": "application/octet-stream"},
        )
