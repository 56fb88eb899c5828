"""Training jobs, as the SDK's ``client.jobs`` namespace: submit, watch, fetch the model.

job_id = client.jobs.submit("alzheimer_classifier", "synthetic_test_data", params={"n_estimators": 50})
final = client.jobs.wait(job_id, on_event=print)
client.jobs.download(job_id).save("model.skops")
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from bastion.client.errors import TransportError
from bastion.client.modelfile import DownloadedModel, open_download
from bastion.client.transport import Transport, operation
from bastion.contract.jobs import SubmitRequest

BASE = "/api/v1/training"
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Event:
    """One Server-Sent Event: ``kind`` is status, state, progress, metrics or end."""

    kind: str
    data: dict[str, Any]
    id: int | None = None
    raw: builtins.list[str] = field(default_factory=builtins.list, repr=False)


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Turn an SSE line stream into events (comments and keep-alives are skipped)."""
    kind, event_id = "message", None
    data: builtins.list[str] = []
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


class Jobs:
    """Your training jobs (and hyper-parameter searches): queue, follow, cancel, download."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

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
        return str(self.t.json("POST", f"{BASE}/submit", json=body, headers=headers)["job_id"])

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
    def get(self, job_id: str) -> dict[str, Any]:
        """The job's current status, progress and (once finished) results."""
        result: dict[str, Any] = self.t.json("GET", f"{BASE}/status/{job_id}")
        return result

    @operation("GET", "/api/v1/training/jobs")
    def list(
        self, limit: int = 10, status: str | None = None, project: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Jobs of all your projects (or of one), newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if project:
            params["project"] = project
        result: builtins.list[dict[str, Any]] = self.t.json("GET", f"{BASE}/jobs", params=params)["jobs"]
        return result

    @operation("POST", "/api/v1/training/cancel/{job_id}")
    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.t.json("POST", f"{BASE}/cancel/{job_id}")
        return result

    @operation("GET", "/api/v1/training/jobs/{job_id}/logs")
    def logs(self, job_id: str, after: int = 0, limit: int = 500) -> dict[str, Any]:
        result: dict[str, Any] = self.t.json(
            "GET", f"{BASE}/jobs/{job_id}/logs", params={"after": after, "limit": limit}
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
        """What a job would cost before it is submitted (resource profile price x expected time)."""
        query: dict[str, Any] = {"model_type": model_type, "dataset_source": dataset_source}
        if resource_profile:
            query["resource_profile"] = resource_profile
        if params:
            query["params"] = json.dumps(params)
        result: dict[str, Any] = self.t.json("GET", f"{BASE}/cost-estimate", params=query)
        return result

    @operation("GET", "/api/v1/training/model/{job_id}")
    def download(self, job_id: str, *, private_key: Any = None, scheme: str | None = None) -> DownloadedModel:
        """Fetch the model and decrypt it here, with our API key or ``private_key`` (X25519)."""
        if scheme is None:
            scheme = "x25519" if private_key is not None else "api-key"
        body = self.t.json("GET", f"{BASE}/model/{job_id}", params={"scheme": scheme})
        return open_download(body, api_key=self.t.api_key, private_key=private_key)

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
                with self.t.stream(
                    "GET",
                    f"{BASE}/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(self.t.timeout, read=60.0),
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
            current = self.get(job_id)
            if on_event is not None:
                on_event(Event("status", current))
            if current["status"] in TERMINAL:
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            time.sleep(poll_seconds)
