"""Fine-tuning and language-model testing, as the SDK's ``client.fine_tuning`` namespace.

ft = client.fine_tuning
ft.base_models.register("/models/tiny", "tiny")                 # admin
f = ft.files.upload("notes.jsonl", model="tiny")                # scrubbed before storage
job = ft.create("tiny", f["id"], hyperparameters={"n_epochs": 3}, num_workers=2)
for event in ft.follow(job["id"]): print(event.get("message"))
ft.download(job["id"]).save("adapter.safetensors")
ft.generate(ft.wait(job["id"])["fine_tuned_model"], prompt="...", compare=True)
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict, Unpack

import httpx

from bastion.client.datasets import code_header
from bastion.client.errors import TransportError
from bastion.client.jobs import parse_sse
from bastion.client.modelfile import DownloadedModel, open_download
from bastion.client.transport import Transport, operation

FT = "/api/v1/fine_tuning"
LLM = "/api/v1/llm"
MODELS = "/api/v1/models"
TERMINAL = ("succeeded", "failed", "cancelled")


class JobOptions(TypedDict, total=False):
    """What a job (and its estimate) takes besides model and training file; ``None`` is left out."""

    validation_file: str | None
    hyperparameters: dict[str, Any] | None
    num_workers: int | None  # a hyper-parameter, accepted here as ``bastion ft create --num-workers``
    suffix: str | None
    seed: int | None
    resource_profile: str | None
    max_runtime_seconds: float | None


class GenerateOptions(TypedDict, total=False):
    max_new_tokens: int | None
    temperature: float | None
    top_p: float | None
    seed: int | None
    version: int | None


def job_body(model: str, training_file: str, options: JobOptions) -> dict[str, Any]:
    """The request body: ``num_workers`` goes into ``hyperparameters`` (where the server reads it)."""
    rest = {k: v for k, v in options.items() if v is not None and k != "num_workers"}
    body: dict[str, Any] = {"model": model, "training_file": training_file, **rest}
    workers = options.get("num_workers")
    if workers is not None:
        body["hyperparameters"] = {**(options.get("hyperparameters") or {}), "num_workers": workers}
    return body


def _generate_body(prompt: str | None, messages: builtins.list[dict[str, str]] | None, **extra: Any) -> Any:
    body = {"prompt": prompt, "messages": messages, **extra}
    return {k: v for k, v in body.items() if v is not None}


class Files:
    """JSONL training files: uploaded, checked line by line and scrubbed of PHI before storage."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("POST", "/api/v1/fine_tuning/files")
    def upload(
        self,
        path: str | Path,
        *,
        model: str,
        name: str | None = None,
        scrub: str = "placeholder",
        project: str | None = None,
    ) -> dict[str, Any]:
        """Upload into ``project`` (default: your personal one); ``model``'s tokenizer counts tokens;
        ``scrub`` is ``placeholder`` ([NAME], [DATE] ...) or ``surrogate``."""
        file = Path(path)
        params = {"model": model, "name": name or file.name, "scrub": scrub}
        out: dict[str, Any] = self.t.json(
            "POST",
            f"{FT}/files",
            params=params | ({"project": project} if project else {}),
            content=file.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        return out

    @operation("GET", "/api/v1/fine_tuning/files/{file_id}")
    def get(self, file_id: str) -> dict[str, Any]:
        """A file's record: name, size, statistics and de-identification report."""
        out: dict[str, Any] = self.t.json("GET", f"{FT}/files/{file_id}")
        return out


class BaseModels:
    """The base language models jobs start from (registered by an admin from the server's disk)."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("POST", "/api/v1/llm/base_models")
    def register(self, path: str | Path, name: str) -> dict[str, Any]:
        """Register a model directory *on the server's machine* (admin; safetensors, no remote code)."""
        out: dict[str, Any] = self.t.json(
            "POST", f"{LLM}/base_models", json={"path": str(path), "name": name}
        )
        return out

    @operation("GET", "/api/v1/llm/base_models")
    def list(self) -> builtins.list[dict[str, Any]]:
        rows: builtins.list[dict[str, Any]] = self.t.json("GET", f"{LLM}/base_models")["data"]
        return rows

    @operation("GET", "/api/v1/llm/base_models/{name}")
    def get(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("GET", f"{LLM}/base_models/{name}")
        return out


class FineTuning:
    """LoRA fine-tuning jobs (OpenAI-shaped) and generation from the models they produce."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.files = Files(transport)
        self.base_models = BaseModels(transport)

    # -- jobs -------------------------------------------------------------------------------------

    @operation("POST", "/api/v1/fine_tuning/jobs/estimate")
    def estimate(self, model: str, training_file: str, **options: Unpack[JobOptions]) -> dict[str, Any]:
        """Time and cost per resource profile, before submitting."""
        body = job_body(model, training_file, options)
        out: dict[str, Any] = self.t.json("POST", f"{FT}/jobs/estimate", json=body)
        return out

    @operation("POST", "/api/v1/fine_tuning/jobs")
    def create(
        self, model: str, training_file: str, *, project: str | None = None, **options: Unpack[JobOptions]
    ) -> dict[str, Any]:
        """Queue a job in ``project`` (default: your personal one); ``model`` is a base model's name."""
        out: dict[str, Any] = self.t.json(
            "POST",
            f"{FT}/jobs",
            json=job_body(model, training_file, options),
            params={"project": project} if project else None,
        )
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs")
    def list(self, limit: int = 20, cursor: str | None = None, project: str | None = None) -> dict[str, Any]:
        """One page of your jobs (of all your projects, or of one), newest first; ``next_cursor``."""
        params: dict[str, Any] = {"limit": limit, "cursor": cursor, "project": project}
        out: dict[str, Any] = self.t.json(
            "GET", f"{FT}/jobs", params={k: v for k, v in params.items() if v is not None}
        )
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}")
    def get(self, job_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("GET", f"{FT}/jobs/{job_id}")
        return out

    @operation("POST", "/api/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel(self, job_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.t.json("POST", f"{FT}/jobs/{job_id}/cancel")
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}/events")
    def events(self, job_id: str, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of the job's events, oldest first (:meth:`follow` streams them live)."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        out: dict[str, Any] = self.t.json("GET", f"{FT}/jobs/{job_id}/events", params=params)
        return out

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def checkpoints(self, job_id: str) -> builtins.list[dict[str, Any]]:
        rows: builtins.list[dict[str, Any]] = self.t.json("GET", f"{FT}/jobs/{job_id}/checkpoints")["data"]
        return rows

    def follow(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Every event of the job as it happens (SSE, resumed after a dropped connection), then the
        final job object (``object`` = ``fine_tuning.job``)."""
        last: str | None = None
        for attempt in range(6):
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
            try:
                with self.t.stream(
                    "GET",
                    f"{FT}/jobs/{job_id}/events",
                    params={"stream": "true"},
                    headers=headers,
                    timeout=httpx.Timeout(self.t.timeout, read=60.0),
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

    def wait(self, job_id: str, *, timeout: float | None = None, poll_seconds: float = 0.5) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; its final object."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            time.sleep(poll_seconds)

    @operation("GET", "/api/v1/fine_tuning/jobs/{job_id}/merged_model")
    def download(self, job_id: str, *, merged: bool = False, private_key: Any = None) -> DownloadedModel:
        """The adapter (with ``merged``: the adapter merged into the base weights), decrypted here
        with our API key or ``private_key`` (X25519). The adapter alone is the job's model download."""
        scheme = "x25519" if private_key is not None else "api-key"
        path = f"{FT}/jobs/{job_id}/merged_model" if merged else f"/api/v1/training/model/{job_id}"
        body = self.t.json("GET", path, params={"scheme": scheme})
        return open_download(body, api_key=self.t.api_key, private_key=private_key)

    # -- testing a model --------------------------------------------------------------------------

    @operation("POST", "/api/v1/models/{model_id}/generate")
    def generate(
        self,
        model_id: str,
        *,
        prompt: str | None = None,
        messages: builtins.list[dict[str, str]] | None = None,
        compare: bool = False,
        access_code: str | None = None,
        **options: Unpack[GenerateOptions],
    ) -> dict[str, Any]:
        """One answer from a fine-tuned (or base) model, given ``prompt`` or chat ``messages``;
        ``compare`` adds the base model's answer (adapter off) as ``base``."""
        body = _generate_body(prompt, messages, compare=compare or None, **options)
        out: dict[str, Any] = self.t.json(
            "POST", f"{MODELS}/{model_id}/generate", json=body, headers=code_header(access_code)
        )
        return out

    def generate_stream(
        self,
        model_id: str,
        *,
        prompt: str | None = None,
        messages: builtins.list[dict[str, str]] | None = None,
        access_code: str | None = None,
        **options: Unpack[GenerateOptions],
    ) -> Iterator[str]:
        """Text pieces as the server produces them."""
        body = _generate_body(prompt, messages, stream=True, **options)
        with self.t.stream(
            "POST", f"{MODELS}/{model_id}/generate", json=body, headers=code_header(access_code)
        ) as response:
            for event in parse_sse(response.iter_lines()):
                if event.kind == "token":
                    yield str(event.data.get("text", ""))

    @operation("POST", "/api/v1/models/{model_id}/perplexity")
    def perplexity(self, model_id: str, file_id: str, *, version: int | None = None) -> dict[str, Any]:
        """Held-out loss and perplexity of a model on one of your fine-tuning files."""
        out: dict[str, Any] = self.t.json(
            "POST", f"{MODELS}/{model_id}/perplexity", json={"file": file_id, "version": version}
        )
        return out
