"""Fine-tuning and language-model testing, as SDK methods (mixed into BastionClient).

client.register_base_model("/models/tiny", "tiny")           # admin
f = client.upload_ft_file("notes.jsonl", model="tiny")       # scrubbed before storage
job = client.ft_create("tiny", f["id"], hyperparameters={"n_epochs": 3})
for event in client.ft_follow(job["id"]): print(event["message"])
client.generate(job_model, messages=[{"role": "user", "content": "..."}], compare=True)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bastion.client.transport import Transport, operation

FT = "/api/v1/fine_tuning"
TERMINAL = ("succeeded", "failed", "cancelled")


class FineTuningMixin:
    """Needs ``_request``, ``transport`` and ``timeout`` from BastionClient."""

    transport: Transport
    timeout: float

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - provided
        raise NotImplementedError

    # -- base models ------------------------------------------------------------------------------

    @operation("POST", "/api/v1/llm/base_models")
    def register_base_model(self, path: str | Path, name: str) -> dict[str, Any]:
        """Register a model directory *on the server's machine* (admin)."""
        out: dict[str, Any] = self._request(
            "POST", "/api/v1/llm/base_models", json={"path": str(path), "name": name}
        )
        return out

    @operation("GET", "/api/v1/llm/base_models")
    def list_base_models(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._request("GET", "/api/v1/llm/base_models")["data"]
        return rows

    @operation("GET", "/api/v1/llm/base_models/{name}")
    def get_base_model(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self._request("GET", f"/api/v1/llm/base_models/{name}")
        return out

    # -- files and jobs ---------------------------------------------------------------------------

    @operation("POST", "/api/v1/fine_tuning/files")
    def upload_ft_file(
        self,
        path: str | Path,
        *,
        model: str,
        name: str | None = None,
        scrub: str = "placeholder",
        project: str | None = None,
    ) -> dict[str, Any]:
        """Upload a JSONL training file into ``project`` (default: your personal project)."""
        file = Path(path)
        params = {"model": model, "name": name or file.name, "scrub": scrub}
        out: dict[str, Any] = self._request(
            "POST",
            f"{FT}/files",
            params=params | ({"project": project} if project else {}),
            content=file.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        return out

    @operation("GET", "/api/v1/fine_tuning/files/{file_id}")
    def get_ft_file(self, file_id: str) -> dict[str, Any]:
        """An uploaded training file's record: name, size, statistics and de-identification report."""
        out: dict[str, Any] = self._request("GET", f"{FT}/files/{file_id}")
        return out

    def _job_body(self, model: str, training_file: str, **options: Any) -> dict[str, Any]:
        """``num_workers`` is a hyper-parameter; it is accepted here too, as ``bastion ft create`` does."""
        workers = options.pop("num_workers", None)
        body: dict[str, Any] = {"model": model, "training_file": training_file}
        body.update({k: v for k, v in options.items() if v is not None})
        if workers is not None:
            body["hyperparameters"] = {**(body.get("hyperparameters") or {}), "num_workers": workers}
        return body

    @operation("POST", "/api/v1/fine_tuning/jobs/estimate")
    def ft_estimate(self, model: str, training_file: str, **options: Any) -> dict[str, Any]:
        out: dict[str, Any] = self._request(
            "POST", f"{FT}/jobs/estimate", json=self._job_body(model, training_file, **options)
        )
        return out

    @operation("POST", "/api/v1/fine_tuning/jobs")
    def ft_create(
        self, model: str, training_file: str, *, project: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """Options: validation_file, hyperparameters, num_workers, suffix, seed, resource_profile,
        max_runtime_seconds.
        The job goes into ``project`` (default: your personal project)."""
        out: dict[str, Any] = self._request(
            "POST",
            f"{FT}/jobs",
            json=self._job_body(model, training_file, **options),
            params={"project": project} if project else None,
        )
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs")
    def ft_list(
        self, limit: int = 20, cursor: str | None = None, project: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        if project:
            params["project"] = project
        out: dict[str, Any] = self._request("GET", f"{FT}/jobs", params=params)
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}")
    def ft_get(self, job_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._request("GET", f"{FT}/jobs/{job_id}")
        return out

    @operation("POST", "/api/v1/fine_tuning/jobs/{job_id}/cancel")
    def ft_cancel(self, job_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._request("POST", f"{FT}/jobs/{job_id}/cancel")
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}/events")
    def ft_events(self, job_id: str, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        out: dict[str, Any] = self._request("GET", f"{FT}/jobs/{job_id}/events", params=params)
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def ft_checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._request("GET", f"{FT}/jobs/{job_id}/checkpoints")["data"]
        return rows

    def ft_follow(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Every event of the job as it happens (SSE), then the final job object (``object`` =
        ``fine_tuning.job``)."""
        import httpx

        from bastion.client.errors import TransportError
        from bastion.client.jobs import parse_sse

        last: str | None = None
        for attempt in range(6):
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
            try:
                with self.transport.stream(
                    "GET",
                    f"{FT}/jobs/{job_id}/events",
                    params={"stream": "true"},
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=60.0),
                ) as response:
                    for event in parse_sse(response.iter_lines()):
                        if event.kind == "end":
                            yield event.data
                            return
                        if event.id is not None:
                            last = str(event.id)
                        yield event.data
            except httpx.HTTPError as exc:
                if attempt == 5:
                    raise TransportError(
                        f"event stream broke: {type(exc).__name__}", code="transport"
                    ) from None
                time.sleep(0.5 * (attempt + 1))

    def ft_wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.ft_get(job_id)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            time.sleep(0.5)

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}/merged_model")
    def ft_download(self, job_id: str, *, merged: bool = False, private_key: Any = None) -> Any:
        """The adapter (or, with ``merged``, the adapter merged into the base weights), decrypted here."""
        from bastion.client.modelfile import open_download

        scheme = "x25519" if private_key is not None else "api-key"
        path = f"{FT}/jobs/{job_id}/merged_model" if merged else f"/api/v1/training/model/{job_id}"
        body = self._request("GET", path, params={"scheme": scheme})
        return open_download(body, api_key=getattr(self, "api_key", None), private_key=private_key)

    # -- testing a model --------------------------------------------------------------------------

    @operation("POST", "/api/v1/models/{model_id}/generate")
    def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = None,
        messages: list[dict[str, str]] | None = None,
        access_code: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Options: max_new_tokens, temperature, top_p, seed, version, compare."""
        body = {"prompt": prompt, "messages": messages, **options}
        headers = {"X-Access-Code": access_code} if access_code else None
        out: dict[str, Any] = self._request(
            "POST",
            f"/api/v1/models/{model_id}/generate",
            json={k: v for k, v in body.items() if v is not None},
            headers=headers,
        )
        return out

    def generate_stream(
        self,
        model_id: str,
        *,
        prompt: str | None = None,
        messages: list[dict[str, str]] | None = None,
        **options: Any,
    ) -> Iterator[str]:
        """Text pieces as the server produces them."""
        from bastion.client.jobs import parse_sse

        body = {"prompt": prompt, "messages": messages, **options, "stream": True}
        with self.transport.stream(
            "POST",
            f"/api/v1/models/{model_id}/generate",
            json={k: v for k, v in body.items() if v is not None},
        ) as response:
            for event in parse_sse(response.iter_lines()):
                if event.kind == "token":
                    yield str(event.data.get("text", ""))

    @operation("POST", "/api/v1/models/{model_id}/perplexity")
    def perplexity(self, model_id: str, file_id: str, *, version: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = self._request(
            "POST", f"/api/v1/models/{model_id}/perplexity", json={"file": file_id, "version": version}
        )
        return out
