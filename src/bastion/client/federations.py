"""Coordinator calls for federations: the ``client.federations`` namespace on the SDK's transport.

api = BastionClient(url, api_key).federations      # or Federations(BastionClient(url, api_key))
fed = api.create({"name": "digits", "model": {...}, "rounds": 10, "min_clients": 5})
token = api.enroll(fed["id"], "hospital-a")["token"]   # shown once: hand it to the site
api.status(fed["id"]); api.rounds(fed["id"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.client.transport import Transport, operation

if TYPE_CHECKING:
    from bastion.client.sdk import BastionClient

BASE = "/api/v1/federations"


class Federations:
    def __init__(self, transport: Transport | BastionClient) -> None:
        # a BastionClient is accepted too: docs/federated.md showed Federations(BastionClient(...))
        self.transport = transport if isinstance(transport, Transport) else transport.transport

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.transport.json(method, BASE + path, **kwargs)
        return body

    @operation("POST", "/api/v1/federations")
    def create(self, spec: dict[str, Any], project: str | None = None) -> dict[str, Any]:
        return self._json("POST", "", json=spec, params={"project": project} if project else None)

    @operation("GET", "/api/v1/federations")
    def list_all(self, project: str | None = None) -> list[dict[str, Any]]:
        return list(self.transport.pages(BASE, {"project": project} if project else None))

    @operation("GET", "/api/v1/federations/{federation_id}")
    def get(self, federation_id: str) -> dict[str, Any]:
        return self._json("GET", f"/{federation_id}")

    @operation("DELETE", "/api/v1/federations/{federation_id}")
    def archive(self, federation_id: str) -> dict[str, Any]:
        """End the federation for good (``DELETE``): archived, its model, keys and updates deleted."""
        return self._json("DELETE", f"/{federation_id}")

    @operation("GET", "/api/v1/federations/{federation_id}/status")
    def status(self, federation_id: str) -> dict[str, Any]:
        return self._json("GET", f"/{federation_id}/status")

    @operation("GET", "/api/v1/federations/{federation_id}/rounds")
    def rounds(self, federation_id: str) -> list[dict[str, Any]]:
        return list(self.transport.pages(f"{BASE}/{federation_id}/rounds"))

    @operation("GET", "/api/v1/federations/{federation_id}/sharing")
    def sharing(self, federation_id: str) -> dict[str, Any]:
        """Visibility and invited guests."""
        return self._json("GET", f"/{federation_id}/sharing")

    @operation("PUT", "/api/v1/federations/{federation_id}/sharing")
    def set_visibility(self, federation_id: str, visibility: str) -> dict[str, Any]:
        """What guests see of the other parties: aggregates, sites or metrics."""
        return self._json("PUT", f"/{federation_id}/sharing", json={"visibility": visibility})

    @operation("POST", "/api/v1/federations/{federation_id}/guests")
    def invite(self, federation_id: str, user: str) -> dict[str, Any]:
        """Invite a user of another project to enrol their own sites."""
        return self._json("POST", f"/{federation_id}/guests", json={"user": user})

    @operation("DELETE", "/api/v1/federations/{federation_id}/guests/{user}")
    def uninvite(self, federation_id: str, user: str) -> dict[str, Any]:
        return self._json("DELETE", f"/{federation_id}/guests/{user}")

    @operation("POST", "/api/v1/federations/{federation_id}/participants")
    def enroll(self, federation_id: str, name: str) -> dict[str, Any]:
        return self._json("POST", f"/{federation_id}/participants", json={"name": name})

    @operation("GET", "/api/v1/federations/{federation_id}/participants")
    def participants(self, federation_id: str) -> list[dict[str, Any]]:
        return list(self.transport.pages(f"{BASE}/{federation_id}/participants"))

    @operation("GET", "/api/v1/federations/{federation_id}/participants/{participant_id}")
    def participant(self, federation_id: str, participant_id: str) -> dict[str, Any]:
        return self._json("GET", f"/{federation_id}/participants/{participant_id}")

    @operation("DELETE", "/api/v1/federations/{federation_id}/participants/{participant_id}")
    def revoke(self, federation_id: str, participant_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/{federation_id}/participants/{participant_id}")

    @operation("GET", "/api/v1/federations/{federation_id}/model")
    def download_model(self, federation_id: str) -> tuple[int, bytes]:
        """The current global model: its version and safetensors bytes."""
        response = self.transport.send("GET", f"{BASE}/{federation_id}/model")
        return int(response.headers.get("x-bastion-global-version", "0")), response.content

    @operation("POST", "/api/v1/federations/{federation_id}/model")
    def upload_model(self, federation_id: str, safetensors_bytes: bytes) -> dict[str, Any]:
        return self._json(
            "POST",
            f"/{federation_id}/model",
            content=safetensors_bytes,
            headers={"Content-Type": "application/octet-stream"},
        )
