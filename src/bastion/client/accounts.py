"""Client side of sign-up, the admin's sign-up queue, password login and SSO (device-style for CLIs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bastion.client.errors import APIError, BastionClientError
from bastion.client.transport import operation


class AccountsMixin:
    """Needs ``_request(method, path, **httpx_kwargs)`` from the client it is mixed into."""

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - provided
        raise NotImplementedError

    @operation("POST", "/api/v1/auth/signup")
    def signup(self, username: str, email: str, password: str) -> dict[str, Any]:
        """Register (when the server allows sign-up); the same answer whether or not the name was free."""
        body = {"username": username, "email": email, "password": password}
        result: dict[str, Any] = self._request("POST", "/api/v1/auth/signup", json=body)
        return result

    @operation("GET", "/api/v1/admin/signups")
    def list_signups(self, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        result: dict[str, Any] = self._request("GET", "/api/v1/admin/signups", params=params)
        return result

    @operation("POST", "/api/v1/admin/signups/{ref}/approve")
    def approve_signup(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/api/v1/admin/signups/{ref}/approve")
        return result

    @operation("DELETE", "/api/v1/admin/signups/{ref}")
    def reject_signup(self, ref: str) -> None:
        self._request("DELETE", f"/api/v1/admin/signups/{ref}")

    def login(self, username: str, password: str) -> dict[str, Any]:
        body = {"username": username, "password": password}
        result: dict[str, Any] = self._request("POST", "/api/v1/auth/login", json=body)
        return result

    @operation("GET", "/api/v1/auth/sso")
    def sso_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/api/v1/auth/sso")
        return result

    @operation("POST", "/api/v1/auth/sso/cli")
    def sso_cli_start(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/v1/auth/sso/cli")
        return result

    @operation("POST", "/api/v1/auth/sso/cli/poll")
    def sso_cli_poll(self, poll_token: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", "/api/v1/auth/sso/cli/poll", json={"poll_token": poll_token}
        )
        return result

    @operation("POST", "/api/v1/auth/sso/link")
    def sso_link(self, return_to: str = "/") -> dict[str, Any]:
        """Start linking a provider identity to the caller's account: open ``authorization_url``."""
        result: dict[str, Any] = self._request(
            "POST", "/api/v1/auth/sso/link", params={"return_to": return_to}
        )
        return result

    @operation("POST", "/api/v1/auth/sso/exchange")
    def sso_exchange(self, code: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/v1/auth/sso/exchange", json={"code": code})
        return result

    def login_sso(
        self, show_url: Callable[[str], None], *, timeout: float | None = None, interval: float | None = None
    ) -> dict[str, Any]:
        """Device-style SSO: hand the URL to ``show_url``, then poll until the browser sign-in is done."""
        started = self.sso_cli_start()
        show_url(started["authorization_url"])
        deadline = time.monotonic() + (timeout if timeout is not None else started["expires_in"])
        pause = interval if interval is not None else started["interval"]
        while True:
            try:
                return self.sso_cli_poll(started["poll_token"])
            except APIError as exc:
                if exc.code != "authorization_pending":
                    raise
            if time.monotonic() >= deadline:
                raise BastionClientError("the SSO sign-in was not finished in time", code="sso_timeout")
            time.sleep(pause)
