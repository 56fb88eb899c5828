"""Resource namespaces of the SDK over one :class:`~bastion.client.transport.Transport`.

client.auth.login("carol", "...")          client.keys.create("laptop")
client.admin.users.list()                  client.admin.audit(action="auth.")
client.admin.training.prices.patch({...})  client.training.resource_profiles()
client.jobs.submit(...)  client.datasets.upload(...)  client.models.predict(...)  (their own modules)
"""

from __future__ import annotations

from typing import Any

from bastion.client.transport import Transport, operation
from bastion.contract.accounts import KeyInfo, Me, NewKeyResponse, TokenResponse, UserInfo


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Auth:
    """Password login and the tokens it gives; after ``login`` this client sends the access token."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.refresh_token: str | None = None

    @operation("POST", "/api/v1/auth/login")
    def login(self, username: str, password: str) -> TokenResponse:
        tokens = TokenResponse.model_validate(
            self.t.json("POST", "/api/v1/auth/login", json={"username": username, "password": password})
        )
        self.t.access_token, self.refresh_token = tokens.access_token, tokens.refresh_token
        return tokens

    @operation("POST", "/api/v1/auth/refresh")
    def refresh(self, refresh_token: str | None = None) -> TokenResponse:
        token = refresh_token or self.refresh_token
        tokens = TokenResponse.model_validate(
            self.t.json("POST", "/api/v1/auth/refresh", json={"refresh_token": token})
        )
        self.t.access_token, self.refresh_token = tokens.access_token, tokens.refresh_token
        return tokens

    @operation("POST", "/api/v1/auth/logout")
    def logout(self) -> dict[str, Any]:
        body = {"refresh_token": self.refresh_token} if self.refresh_token else None
        out: dict[str, Any] = self.t.json("POST", "/api/v1/auth/logout", json=body)
        self.t.access_token = self.refresh_token = None
        return out

    @operation("GET", "/api/v1/auth/me")
    def me(self) -> Me:
        return Me.model_validate(self.t.json("GET", "/api/v1/auth/me"))


class Keys:
    """Your own API keys."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("GET", "/api/v1/auth/keys")
    def list(self) -> list[KeyInfo]:
        return [KeyInfo.model_validate(k) for k in self.t.pages("/api/v1/auth/keys")]

    @operation("POST", "/api/v1/auth/keys")
    def create(self, name: str = "default", expires_in_days: float | None = None) -> NewKeyResponse:
        body = _clean({"name": name, "expires_in_days": expires_in_days})
        return NewKeyResponse.model_validate(self.t.json("POST", "/api/v1/auth/keys", json=body))

    @operation("GET", "/api/v1/auth/keys/{key_id}")
    def get(self, key_id: str) -> KeyInfo:
        return KeyInfo.model_validate(self.t.json("GET", f"/api/v1/auth/keys/{key_id}"))

    @operation("DELETE", "/api/v1/auth/keys/{key_id}")
    def revoke(self, key_id: str) -> KeyInfo:
        return KeyInfo.model_validate(self.t.json("DELETE", f"/api/v1/auth/keys/{key_id}"))


class Users:
    """Admin: users and keys for them."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("GET", "/api/v1/admin/users")
    def list(self) -> list[UserInfo]:
        return [UserInfo.model_validate(u) for u in self.t.pages("/api/v1/admin/users")]

    @operation("POST", "/api/v1/admin/users")
    def create(
        self,
        username: str,
        role: str = "user",
        *,
        password: str | None = None,
        email: str | None = None,
        idempotency_key: str | None = None,
    ) -> UserInfo:
        body = _clean({"username": username, "role": role, "password": password, "email": email})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return UserInfo.model_validate(self.t.json("POST", "/api/v1/admin/users", json=body, headers=headers))

    @operation("GET", "/api/v1/admin/users/{user_id}")
    def get(self, user: str) -> UserInfo:
        return UserInfo.model_validate(self.t.json("GET", f"/api/v1/admin/users/{user}"))

    @operation("PATCH", "/api/v1/admin/users/{user_id}")
    def update(
        self,
        user: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
        current_password: str | None = None,
    ) -> UserInfo:
        body = _clean(
            {"role": role, "disabled": disabled, "password": password, "current_password": current_password}
        )
        return UserInfo.model_validate(self.t.json("PATCH", f"/api/v1/admin/users/{user}", json=body))

    @operation("POST", "/api/v1/admin/users/{user_id}/keys")
    def create_key(
        self, user: str, name: str = "default", expires_in_days: float | None = None
    ) -> NewKeyResponse:
        body = _clean({"name": name, "expires_in_days": expires_in_days})
        return NewKeyResponse.model_validate(
            self.t.json("POST", f"/api/v1/admin/users/{user}/keys", json=body)
        )


class Prices:
    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("GET", "/api/v1/admin/training/prices")
    def get(self) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("GET", "/api/v1/admin/training/prices")["prices"]
        return out

    @operation("PUT", "/api/v1/admin/training/prices")
    def replace(self, prices: dict[str, dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("PUT", "/api/v1/admin/training/prices", json={"prices": prices})
        result: dict[str, Any] = out["prices"]
        return result

    @operation("PATCH", "/api/v1/admin/training/prices")
    def patch(self, changes: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
        """Set the listed profiles; ``None`` removes one; the others stay."""
        out: dict[str, Any] = self.t.json("PATCH", "/api/v1/admin/training/prices", json={"prices": changes})
        result: dict[str, Any] = out["prices"]
        return result


class AdminTraining:
    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.prices = Prices(transport)

    @operation("GET", "/api/v1/admin/training/status")
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("GET", "/api/v1/admin/training/status")
        return out

    @operation("GET", "/api/v1/admin/training/jobs")
    def jobs(
        self, *, status: str | None = None, owner_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Every user's jobs, newest first (all pages, or the first ``limit``)."""
        params = _clean({"status": status, "owner_id": owner_id})
        if limit is not None:
            page = self.t.json("GET", "/api/v1/admin/training/jobs", params={**params, "limit": limit})
            return list(page["data"])
        return self.t.pages("/api/v1/admin/training/jobs", {**params, "limit": 100})

    @operation("POST", "/api/v1/admin/training/cancel/{job_id}")
    def cancel(self, job_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("POST", f"/api/v1/admin/training/cancel/{job_id}")
        return out


class Admin:
    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.users = Users(transport)
        self.training = AdminTraining(transport)

    @operation("GET", "/api/v1/admin/audit")
    def audit(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of the audit log, newest first (``next_cursor`` for the next)."""
        params = _clean(
            {
                "action": action,
                "actor": actor,
                "outcome": outcome,
                "since": since,
                "limit": limit,
                "cursor": cursor,
            }
        )
        out: dict[str, Any] = self.t.json("GET", "/api/v1/admin/audit", params=params)
        return out


class Training:
    """The training catalog: what can be trained, on what, at which price; the download key."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("GET", "/api/v1/training/examples")
    def examples(self) -> dict[str, Any]:
        """Example job configurations (the server answers without a key)."""
        out: dict[str, Any] = self.t.json("GET", "/api/v1/training/examples")
        return out

    @operation("GET", "/api/v1/training/model-types")
    def model_types(self) -> list[dict[str, Any]]:
        """The model types a job can train, with their parameters and the datasets they accept."""
        return list(self.t.json("GET", "/api/v1/training/model-types")["model_types"])

    @operation("GET", "/api/v1/training/resource-profiles")
    def resource_profiles(self) -> list[dict[str, Any]]:
        return list(self.t.json("GET", "/api/v1/training/resource-profiles")["resource_profiles"])

    @operation("GET", "/api/v1/training/download-key")
    def download_key(self) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("GET", "/api/v1/training/download-key")
        return out

    @operation("PUT", "/api/v1/training/download-key")
    def set_download_key(self, public_key: str) -> dict[str, Any]:
        """Register your X25519 public key: downloads are then sealed to it, not to the API key."""
        out: dict[str, Any] = self.t.json(
            "PUT", "/api/v1/training/download-key", json={"public_key": public_key}
        )
        return out

    @operation("DELETE", "/api/v1/training/download-key")
    def delete_download_key(self) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("DELETE", "/api/v1/training/download-key")
        return out
