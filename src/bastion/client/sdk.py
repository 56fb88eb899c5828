"""``BastionClient``: the Python SDK over httpx. Imports no server code.

client = BastionClient("http://127.0.0.1:5000", api_key)
job_id = client.submit("alzheimer_classifier", "synthetic_test_data", params={"n_estimators": 50})
final = client.wait(job_id, on_event=print)
client.download(job_id).save("model.skops")
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from bastion.client.accounts import AccountsMixin
from bastion.client.catalog import CatalogMixin
from bastion.client.errors import APIError, BastionClientError, TransportError
from bastion.client.federations import Federations
from bastion.client.fine_tuning import FineTuningMixin
from bastion.client.modelfile import DownloadedModel, open_download
from bastion.client.projects import Projects
from bastion.client.resources import Admin, Auth, Keys, Training
from bastion.client.transport import Retry, Transport, error_of, operation
from bastion.contract.jobs import SubmitRequest

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Event:
    """One Server-Sent Event: ``kind`` is status, state, progress, metrics or end."""

    kind: str
    data: dict[str, Any]
    id: int | None = None
    raw: list[str] = field(default_factory=list, repr=False)


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Turn an SSE line stream into events (comments and keep-alives are skipped)."""
    kind, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {"text": "\n".join(data)}
                yield Event(kind, payload if isinstance(payload, dict) else {"value": payload}, event_id)
            kind, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id" and value.isdigit():
            event_id = int(value)


class BastionClient(CatalogMixin, FineTuningMixin, AccountsMixin):
    """Jobs here; datasets and models from CatalogMixin, fine-tuning from FineTuningMixin, sign-up and
    SSO from AccountsMixin; the rest in namespaces on one transport: ``auth``, ``keys``, ``admin``,
    ``training``, ``federations``."""

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
        self.timeout = timeout
        self.auth = Auth(self.transport)
        self.keys = Keys(self.transport)
        self.admin = Admin(self.transport)
        self.training = Training(self.transport)
        self.federations = Federations(self.transport)
        self.projects = Projects(self.transport)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> BastionClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.transport.json(method, path, **kwargs)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_of(response)
        try:
            return response.json()
        except ValueError:
            return None

    # -- the API ----------------------------------------------------------------------------------

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

    @operation("GET", "/api/v1/training/examples")
    def examples(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/api/v1/training/examples")
        return result

    @operation("GET", "/api/v1/training/model-types")
    def model_types(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/api/v1/training/model-types")["model_types"]
        return result

    @operation("POST", "/api/v1/training/submit")
    def submit(
        self,
        model_type: str,
        dataset_source: str,
        *,
        params: dict[str, Any] | None = None,
        dataset_id: str | None = None,
        target: str | None = None,
        resource_profile: str | None = None,
        max_runtime_seconds: float | None = None,
        seed: int = 0,
        model_name: str | None = None,
        resources: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        project: str | None = None,
    ) -> str:
        """Queue a job; returns its id. Raises ValidationError listing valid choices on bad input.

        ``resources`` ({cpus, gpus, memory}) is what the executor reserves; ``search`` makes the job a
        hyper-parameter search (see :meth:`search`). With ``idempotency_key`` a retried submit returns
        the first job instead of queueing another."""
        request = SubmitRequest(
            model_type=model_type,
            dataset_source=dataset_source,
            params=params or {},
            dataset_id=dataset_id,
            target=target,
            resource_profile=resource_profile,
            max_runtime_seconds=max_runtime_seconds,
            seed=seed,
            model_name=model_name,
            resources=resources,
            search=search,
            project=project,
        )
        body = request.model_dump(mode="json", exclude_none=True)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return str(self._request("POST", "/api/v1/training/submit", json=body, headers=headers)["job_id"])

    def search(
        self,
        model_type: str,
        dataset_source: str,
        space: dict[str, Any],
        *,
        trials: int = 20,
        parallel: int = 1,
        cv: int = 5,
        time_budget_seconds: float | None = None,
        **submit: Any,
    ) -> str:
        """Queue a hyper-parameter search (Optuna TPE, k-fold CV per trial); returns the job id.

        The finished job's ``results["search"]`` holds the trial table and the best trial; its model is
        the best trial retrained on all training rows."""
        search: dict[str, Any] = {"space": space, "trials": trials, "parallel": parallel, "cv": cv}
        if time_budget_seconds is not None:
            search["time_budget_seconds"] = time_budget_seconds
        return self.submit(model_type, dataset_source, search=search, **submit)

    @operation("GET", "/api/v1/training/status/{job_id}")
    def status(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/training/status/{job_id}")
        return result

    @operation("GET", "/api/v1/training/jobs")
    def list_jobs(
        self, limit: int = 10, status: str | None = None, project: str | None = None
    ) -> list[dict[str, Any]]:
        """Jobs of all your projects (or of one), newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if project:
            params["project"] = project
        result: list[dict[str, Any]] = self._request("GET", "/api/v1/training/jobs", params=params)["jobs"]
        return result

    @operation("POST", "/api/v1/training/cancel/{job_id}")
    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/api/v1/training/cancel/{job_id}")
        return result

    @operation("GET", "/api/v1/training/jobs/{job_id}/logs")
    def logs(self, job_id: str, after: int = 0, limit: int = 500) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", f"/api/v1/training/jobs/{job_id}/logs", params={"after": after, "limit": limit}
        )
        return result

    @operation("GET", "/api/v1/training/cost-estimate")
    def cost_estimate(
        self,
        model_type: str,
        dataset_source: str,
        resource_profile: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        query: dict[str, Any] = {"model_type": model_type, "dataset_source": dataset_source}
        if resource_profile:
            query["resource_profile"] = resource_profile
        if params:
            query["params"] = json.dumps(params)
        result: dict[str, Any] = self._request("GET", "/api/v1/training/cost-estimate", params=query)
        return result

    @operation("PUT", "/api/v1/training/download-key")
    def register_download_key(self, public_key: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "PUT", "/api/v1/training/download-key", json={"public_key": public_key}
        )
        return result

    @operation("GET", "/api/v1/training/model/{job_id}")
    def download(self, job_id: str, *, private_key: Any = None, scheme: str | None = None) -> DownloadedModel:
        """Fetch the model and decrypt it here, with our API key or ``private_key`` (X25519)."""
        if scheme is None:
            scheme = "x25519" if private_key is not None else "api-key"
        body = self._request("GET", f"/api/v1/training/model/{job_id}", params={"scheme": scheme})
        return open_download(body, api_key=self.api_key, private_key=private_key)

    # -- watching ---------------------------------------------------------------------------------

    @operation("GET", "/api/v1/training/jobs/{job_id}/events")
    def events(self, job_id: str, *, after: int | None = None, reconnect: bool = True) -> Iterator[Event]:
        """Server-Sent Events of one job until its ``end`` event; resumes after a dropped connection."""
        last = after
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                with self.transport.stream(
                    "GET",
                    f"/api/v1/training/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=60.0),
                ) as response:
                    for event in parse_sse(response.iter_lines()):
                        failures = 0
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.kind == "end":
                            return
            except httpx.HTTPError as exc:
                failures += 1
                if not reconnect or failures > 5:
                    raise TransportError(
                        f"event stream broke: {type(exc).__name__}", code="transport"
                    ) from None
                time.sleep(min(5.0, 0.5 * failures))
                continue
            if not reconnect:
                return

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[Event], None] | None = None,
        poll_seconds: float = 1.0,
    ) -> dict[str, Any]:
        """Block until the job is finished; returns its final status. Uses SSE, else polls."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for event in self.events(job_id):
                if on_event is not None:
                    on_event(event)
                if event.kind == "end":
                    return event.data
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
        except TransportError:
            pass
        while True:
            current = self.status(job_id)
            if on_event is not None:
                on_event(Event("status", current))
            if current["status"] in TERMINAL:
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            time.sleep(poll_seconds)


__all__ = ["APIError", "BastionClient", "BastionClientError", "DownloadedModel", "Event", "parse_sse"]
