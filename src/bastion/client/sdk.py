"""``BastionClient``: the Python SDK over httpx. Imports no server code.

client = BastionClient("http://127.0.0.1:5000", api_key)
job_id = client.jobs.submit("alzheimer_classifier", "synthetic_test_data", params={"n_estimators": 50})
final = client.jobs.wait(job_id, on_event=print)
client.jobs.download(job_id).save("model.skops")
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from bastion.client.accounts import AccountsMixin
from bastion.client.datasets import Datasets
from bastion.client.errors import APIError, BastionClientError
from bastion.client.federations import Federations
from bastion.client.fine_tuning import FineTuning
from bastion.client.jobs import Event, Jobs, parse_sse
from bastion.client.modelfile import DownloadedModel
from bastion.client.models import Models
from bastion.client.projects import Projects
from bastion.client.resources import Admin, Auth, Keys, Training
from bastion.client.transport import Retry, Transport, operation


class BastionClient(AccountsMixin):
    """Resource namespaces on one transport: ``jobs``, ``datasets``, ``models``, ``federations``,
    ``projects``, ``training``, ``auth``, ``keys``, ``admin``, ``fine_tuning``. Sign-up/SSO
    (AccountsMixin) are still methods of the client itself."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext | None = None,
        http: httpx.Client | None = None,
        retry: Retry | None = None,
    ) -> None:
        # ``http`` lets callers bring their own client (a FastAPI TestClient in tests); ours is closed by close().
        # ``verify``: a CA bundle path, False, or None for BASTION_CA_CERT / the system's store.
        # ``retry``: try network errors, 429 and 503 again (off by default: not every call is idempotent).
        self.transport = Transport(url, api_key, timeout=timeout, verify=verify, http=http, retry=retry)
        self.url, self.api_key, self.http = self.transport.url, self.transport.api_key, self.transport.http
        self.jobs = Jobs(self.transport)
        self.datasets = Datasets(self.transport)
        self.models = Models(self.transport)
        self.auth = Auth(self.transport)
        self.keys = Keys(self.transport)
        self.admin = Admin(self.transport)
        self.training = Training(self.transport)
        self.federations = Federations(self.transport)
        self.projects = Projects(self.transport)
        self.fine_tuning = FineTuning(self.transport)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> BastionClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing for AccountsMixin ----------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.transport.json(method, path, **kwargs)

    # -- the server itself ------------------------------------------------------------------------

    @operation("POST", "/api/v1/admin/lockouts/unlock")
    def unlock(self, username: str | None = None, address: str | None = None) -> int:
        """Admin: lift the lockout of an account and/or an address; the number of counters cleared."""
        body = {"username": username, "address": address}
        return int(self._request("POST", "/api/v1/admin/lockouts/unlock", json=body)["cleared"])

    @operation("GET", "/api/v1/health")
    def health(self) -> dict[str, Any]:
        """Health in seeds/000's shape (503 with the same body when unhealthy: returned, not raised)."""
        body: dict[str, Any] = self.transport.raw("GET", "/api/v1/health").json()
        return body


__all__ = [
    "APIError",
    "BastionClient",
    "BastionClientError",
    "DownloadedModel",
    "Event",
    "parse_sse",
]
