"""The SDK's one HTTP plumbing: base URL, credentials, TLS trust, error mapping.

Every resource namespace (``client.auth``, ``client.admin``, ``client.jobs``...) sends through one
:class:`Transport`, so authentication, ``BASTION_CA_CERT`` and the error classes are the same
everywhere. :func:`operation` records which HTTP operation each SDK method covers; a test walks the
server's OpenAPI document against that record (tests/client/test_sdk_coverage.py).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from bastion.client.errors import TransportError, from_response

DEFAULT_URL = "http://127.0.0.1:5000"
F = TypeVar("F", bound=Callable[..., Any])
# (METHOD, path template) -> "Class.method" of the SDK, filled by @operation at import.
OPERATIONS: dict[tuple[str, str], str] = {}


def operation(method: str, path: str) -> Callable[[F], F]:
    """Mark an SDK method as the client of ``METHOD path`` (path as in the OpenAPI document)."""

    def mark(fn: F) -> F:
        OPERATIONS[(method.upper(), path)] = fn.__qualname__
        return fn

    return mark


def default_verify(ca_cert: str | None = None) -> bool | str:
    """TLS trust: an explicit CA bundle, else ``BASTION_CA_CERT``, else the system's store."""
    return ca_cert or os.environ.get("BASTION_CA_CERT") or True


class Transport:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = (url or os.environ.get("BASTION_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("BASTION_API_KEY")
        self.access_token: str | None = None
        self.timeout = timeout
        self._owns_http = http is None
        trust = default_verify() if verify is None else verify
        if isinstance(trust, str):  # a CA bundle: httpx wants an SSL context for it
            trust = ssl.create_default_context(cafile=trust)
        self.http = http or httpx.Client(base_url=self.url, timeout=timeout, verify=trust)

    @property
    def auth_headers(self) -> dict[str, str]:
        if self.access_token:
            return {"Authorization": f"Bearer {self.access_token}"}
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an error status raises the matching :mod:`bastion.client.errors` class."""
        headers = {**self.auth_headers, **(kwargs.pop("headers", None) or {})}
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.ConnectError as exc:
            hint = " (a private CA? pass --ca-cert or set BASTION_CA_CERT)" if "SSL" in str(exc) else ""
            raise TransportError(f"cannot reach {self.url}: ConnectError{hint}", code="transport") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}: {type(exc).__name__}", code="transport") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise from_response(response.status_code, body, response.headers)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        return response.json() if response.content else None

    def pages(self, path: str, params: dict[str, Any] | None = None, key: str = "data") -> list[Any]:
        """Every item of a paged collection, following ``next_cursor`` to the end."""
        query = dict(params or {})
        items: list[Any] = []
        while True:
            page = self.json("GET", path, params=query)
            items.extend(page[key])
            if not page.get("next_cursor"):
                return items
            query["cursor"] = page["next_cursor"]
