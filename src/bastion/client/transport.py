"""The SDK's one HTTP plumbing: base URL, credentials, TLS trust, error mapping, optional retry.

Every resource namespace (``client.auth``, ``client.admin``, ``client.federations``...) and the site
runtime (:mod:`bastion.client.site`) send through one :class:`Transport`, so authentication,
``BASTION_CA_CERT``, the error classes and the retry rules are the same everywhere. :func:`operation` records which HTTP operation each SDK method covers; a test walks the
server's OpenAPI document against that record (tests/client/test_sdk_coverage.py).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from bastion.client.errors import APIError, BastionClientError, TransportError, from_response

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


@dataclass(frozen=True)
class Retry:
    """Which failures are tried again, and the backoff between tries.

    Network errors always retry; so do the listed statuses, and every 5xx with ``server_errors``.
    The wait is the answer's ``Retry-After`` when it has one, else the exponential backoff; after
    ``give_up_after`` seconds of consecutive failures the last error is raised.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 15.0
    give_up_after: float = 600.0
    statuses: frozenset[int] = frozenset({429, 503})
    server_errors: bool = False

    def retries(self, error: BastionClientError) -> bool:
        if isinstance(error, TransportError):
            return True
        return error.status in self.statuses or (self.server_errors and error.status >= 500)


# Called before each wait: the error that will be retried and the seconds until the next try.
OnRetry = Callable[[BastionClientError, float], None]


def error_of(response: httpx.Response) -> APIError:
    """The :mod:`bastion.client.errors` class for an error response."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return from_response(response.status_code, body, response.headers)


class Transport:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext | None = None,
        http: httpx.Client | None = None,
        retry: Retry | None = None,
        on_retry: OnRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
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
        self.retry, self.on_retry, self.sleep = retry, on_retry, sleep

    @property
    def auth_headers(self) -> dict[str, str]:
        if self.access_token:
            return {"Authorization": f"Bearer {self.access_token}"}
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def send(self, method: str, path: str, *, retry: Retry | None = None, **kwargs: Any) -> httpx.Response:
        """One request; an error status raises the matching :mod:`bastion.client.errors` class.

        With a retry policy (``retry``, else the transport's own) the failures it lists are tried
        again after a wait, ``on_retry`` hearing of each; other errors raise at once."""
        policy = retry or self.retry
        if policy is None:
            return self._send_once(method, path, **kwargs)
        delay, failing_since = policy.initial, None
        while True:
            try:
                return self._send_once(method, path, **kwargs)
            except BastionClientError as error:
                if not policy.retries(error):
                    raise
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > policy.give_up_after:
                    raise
                wait = (error.retry_after if isinstance(error, APIError) else None) or delay
                if self.on_retry is not None:
                    self.on_retry(error, wait)
                self.sleep(wait)
                delay = min(delay * policy.factor, policy.maximum)

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.raw(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_of(response)
        return response

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request whose status the caller reads itself (health answers 503 with a body)."""
        headers = {**self.auth_headers, **(kwargs.pop("headers", None) or {})}
        try:
            return self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (Server-Sent Events) with the same credentials and error mapping;
        network errors raise ``httpx.HTTPError`` so a reader can reconnect."""
        headers = {**self.auth_headers, **(kwargs.pop("headers", None) or {})}
        with self.http.stream(method, path, headers=headers, **kwargs) as response:
            if response.status_code >= 400:
                response.read()
                raise error_of(response)
            yield response

    def _unreachable(self, exc: httpx.HTTPError) -> TransportError:
        name = type(exc).__name__
        hint = ""
        if isinstance(exc, httpx.ConnectError) and "SSL" in str(exc):
            hint = " (a private CA? pass --ca-cert or set BASTION_CA_CERT)"
        return TransportError(f"cannot reach {self.url}: {name}{hint}", code="transport")

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
