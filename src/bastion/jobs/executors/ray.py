"""The Ray executor: each claimed job runs as one Ray task, keys and vault staying with the worker.

Trust boundary. The Bastion worker (this process) holds the master key, the vault and the database
credentials; the Ray cluster gets none of them. For each job the worker loads and decrypts the
inputs itself, puts them in Ray's object store, and starts a task (bastion.jobs.executors.ray_task)
with the job spec minus every secret and path. The task streams progress, logs and finally its
result back; a model comes back as package bytes, which the worker checks and seals into the vault.
The cluster therefore sees plaintext training data and models in memory, and Ray moves objects with
pickle: it must be a network the hospital trusts, and it must demand Ray's token authentication.

Security check at connect, in this order: an address is required (never start a private cluster);
``RAY_AUTH_MODE=token`` is required unless ``insecure`` is set *and* the address is a loopback
one; after connecting, a probe task must report that the node enforces token auth too.

Semantics kept from the local executor: a task waiting for resources is the stage
``waiting_for_resources`` (an event and a log line) until it reports ``started``; cancel and the
maximum runtime ``ray.cancel(force=True)`` the task in any state (the runtime counts from
``started``: time spent waiting for resources is not the job's runtime); a Ray worker or node dying is
``Outcome.killed = NODE_DIED`` (the worker retries by its attempt counter); if the Bastion worker
itself dies, Ray kills the tasks it owned and recovery re-queues the job, so nothing runs twice to
completion (and the fenced writes would refuse a second completion anyway).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from bastion.errors import ConfigError, Invalid
from bastion.jobs.config import DEFAULT_TARGET, JobConfig
from bastion.jobs.executor import Outcome, Sink
from bastion.jobs.executors import NODE_DIED
from bastion.jobs.executors.ray_task import DEFAULT_REMOTE_TARGET

WAIT_SLICE = 0.1
# Spec keys that never travel to the cluster (local paths of this machine).
_LOCAL_ONLY = ("kaggle_path",)
_lock = threading.Lock()
_connection: dict[str, Any] = {"address": None, "users": 0}


def is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_security(address: str | None, *, insecure: bool, env: dict[str, str] | None = None) -> bool:
    """Refuse an address-less or unauthenticated connection; True when token auth is required."""
    env = dict(os.environ) if env is None else env
    if not address:
        raise ConfigError("BASTION_EXECUTOR=ray needs BASTION_RAY_ADDRESS (host:port of the Ray head)")
    if str(env.get("RAY_AUTH_MODE", "")).lower() == "token":
        return True
    if insecure and is_loopback(address):
        return False
    if insecure:
        raise ConfigError(
            "--insecure-ray is only allowed for a Ray cluster on a loopback address; "
            f"{address!r} is not one. Enable Ray token authentication (RAY_AUTH_MODE=token)."
        )
    raise ConfigError(
        "Ray without token authentication lets anyone who reaches it run code (CVE-2023-48022): "
        "start the cluster and this worker with RAY_AUTH_MODE=token and the cluster's token "
        "(RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH); --insecure-ray is accepted only on 127.0.0.1"
    )


def _ray_options(resources: dict[str, Any] | None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    res = resources or {"cpus": 1.0}
    options: dict[str, Any] = {
        "num_cpus": float(res.get("cpus") or 0.0),
        "num_gpus": float(res.get("gpus") or 0.0),
        "max_retries": 0,
        "num_returns": "streaming",
    }
    if int((params or {}).get("num_workers") or 1) > 1:
        # Data-parallel: the task only coordinates; its Ray Train workers reserve a CPU each.
        options["num_cpus"], options["num_gpus"] = 0.0, 0.0
    memory = float(res.get("memory_mb") or 0.0)
    if memory > 0:
        options["memory"] = int(memory * 1024 * 1024)
    return options


class RayExecutor:
    name = "ray"

    def __init__(self, address: str, vault: Any) -> None:
        self.address = address
        self.vault = vault
        self._closed = False

    @classmethod
    def connect(cls, address: str | None, *, insecure: bool, vault: Any) -> RayExecutor:
        """Connect this process to the cluster (once per process), after the security checks."""
        token = check_security(address, insecure=insecure)
        assert address is not None
        import ray

        with _lock:
            if _connection["address"] not in (None, address):
                raise ConfigError("this process is already connected to another Ray cluster")
            if not ray.is_initialized():
                if token:
                    _reload_auth_settings()
                ray.init(
                    address=address,
                    namespace="bastion",
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                    configure_logging=False,
                )
                _connection["address"] = address
                if token:
                    from bastion.jobs.executors.ray_task import auth_mode

                    mode = ray.get(ray.remote(num_cpus=0)(auth_mode).remote(), timeout=120)
                    if mode != "token":
                        ray.shutdown()
                        _connection["address"] = None
                        raise ConfigError(
                            f"the Ray cluster at {address} does not enforce token authentication"
                        )
            _connection["users"] += 1
        return cls(address, vault)

    def prepare(self, spec: dict[str, Any], secrets: dict[str, Any], config: JobConfig) -> RayJobRun:
        # ``secrets`` (the master key, the vault directory) are deliberately not used here.
        return RayJobRun(self, spec, config)

    def close(self) -> None:
        """Drop this executor's use of the connection; the last one disconnects (owned tasks end)."""
        import ray

        with _lock:
            if self._closed:
                return
            self._closed = True
            _connection["users"] = max(0, _connection["users"] - 1)
            if _connection["users"] == 0 and ray.is_initialized():
                ray.shutdown()
                _connection["address"] = None


class RayJobRun:
    """One job as one Ray task, driven like a local JobProcess."""

    def __init__(self, executor: RayExecutor, spec: dict[str, Any], config: JobConfig) -> None:
        self.executor = executor
        self.spec = spec
        self.config = config
        self.killed: str | None = None
        self.task: Any = None
        self._commands: Any = None  # a Ray queue actor, for a job started ``interactive``
        self.refused: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def remote_spec(self) -> dict[str, Any]:
        """What the cluster receives about the job: the spec without local paths or secrets."""
        spec = {k: v for k, v in self.spec.items() if k not in _LOCAL_ONLY}
        if spec.get("model_type") == "llm_lora":
            from bastion.llm.on_ray import remote_spec

            return remote_spec(spec)
        return spec

    def target(self) -> str:
        return DEFAULT_REMOTE_TARGET if self.config.target == DEFAULT_TARGET else self.config.target

    def start(self) -> int | None:
        """Decrypt the inputs here, hand them to the object store, submit the task."""
        import ray

        from bastion.jobs.executors.ray_task import run_job

        with self._lock:
            if self.killed is not None:
                return None
        try:
            inputs = job_inputs(self.spec, self.executor.vault)
        except Invalid as exc:  # this kind of job cannot run here: it fails with the reason
            self.refused = {"code": exc.code, "message": exc.message}
            return 0
        options = _ray_options(self.spec.get("resources"), self.spec.get("params"))
        if self.config.child_env:
            options["runtime_env"] = {"env_vars": dict(self.config.child_env)}
        if self.spec.get("interactive"):
            from ray.util.queue import Queue

            # Owned by this worker: it ends with the run, or with this process.
            self._commands = Queue(actor_options={"num_cpus": 0})
        with self._lock:
            if self.killed is not None:
                self._drop_commands()
                return None
            self.task = (
                _remote(run_job)
                .options(**options)
                .remote(self.target(), self.remote_spec(), ray.put(inputs), self._commands)
            )
        return 0

    def send(self, command: dict[str, Any]) -> bool:
        """Put a command in the task's queue (``ctx.receive`` there); False if it cannot take one."""
        commands = self._commands
        if commands is None or self.killed is not None:
            return False
        try:
            commands.put_nowait(command)
        except Exception:  # the queue actor is gone (the run ended)
            return False
        return True

    def _drop_commands(self) -> None:
        commands, self._commands = self._commands, None
        if commands is not None:
            commands.shutdown(force=True)

    def kill(self, reason: str) -> bool:
        import ray

        with self._lock:
            if self.killed is None:
                self.killed = reason
            task = self.task
        if task is not None:
            try:
                ray.cancel(task, force=True)
            except Exception:  # already finished, or the connection is gone
                return False
        return True

    def run(self, sink: Sink, *, deadline: float, tick: Callable[[], None] | None = None) -> Outcome:
        import ray
        from ray.exceptions import RayError, TaskCancelledError

        outcome = Outcome()
        if self.task is None:
            outcome.killed = self.killed
            outcome.error = self.refused
            outcome.returncode = 1
            return outcome
        resources = self.spec.get("resources") or {}
        sink("progress", (0.0, {"stage": "waiting_for_resources", "resources": resources}))
        sink("log", ("system", f"queued on Ray for {_describe(resources)}"))
        # The maximum runtime is the task's: its clock starts when Ray starts the task, not while the
        # job waits for resources (cancel stops a waiting job; so does the worker's close).
        budget, started = max(0.0, deadline - time.monotonic()), False
        while self.killed is None:
            if started and time.monotonic() >= deadline:
                self.kill("timeout")
                break
            ready, _ = ray.wait([self.task], timeout=WAIT_SLICE)
            if ready:
                try:
                    message = ray.get(next(self.task))
                except StopIteration:
                    break
                except TaskCancelledError:
                    break
                except RayError as exc:
                    if self.killed is None:
                        outcome.killed = NODE_DIED
                        outcome.error = {
                            "message": f"the Ray worker running the job died ({type(exc).__name__})"
                        }
                    break
                if not started and isinstance(message, dict) and message.get("type") == "started":
                    started, deadline = True, time.monotonic() + budget
                self._handle(message, sink, outcome)
            if tick is not None:
                tick()
        if self.killed is not None:
            outcome.killed = self.killed
        outcome.returncode = 0 if outcome.result is not None and outcome.killed is None else 1
        with contextlib.suppress(Exception):
            self._drop_commands()
        return outcome

    def _handle(self, message: Any, sink: Sink, outcome: Outcome) -> None:
        if not isinstance(message, dict):
            outcome.protocol_errors += 1
            return
        kind = message.get("type")
        if kind == "started":
            sink("progress", (0.0, {"stage": "started"}))
            sink(
                "log",
                ("system", f"running on Ray node {str(message.get('node'))[:16]} (pid {message.get('pid')})"),
            )
        elif kind == "progress":
            event = message.get("event")
            sink(
                "progress", (float(message.get("progress") or 0.0), event if isinstance(event, dict) else {})
            )
        elif kind == "log":
            stream = message.get("stream")
            sink("log", (stream if stream in ("stdout", "stderr") else "job", str(message.get("line", ""))))
        elif kind == "result":
            outcome.result = self._seal(message, outcome)
        elif kind == "vault_put":
            self._put(message, outcome)
        elif kind == "error":
            outcome.error = message
        else:
            outcome.protocol_errors += 1

    def _put(self, message: dict[str, Any], outcome: Outcome) -> None:
        """A fine-tuning checkpoint the task sent back: written through the vault, if it is this job's."""
        from bastion.llm.on_ray import checkpoint_kind

        job_id, artifact_id = str(self.spec["job_id"]), str(message.get("artifact_id"))
        kind = checkpoint_kind(job_id, artifact_id)
        data = message.get("data")
        if kind is None or not isinstance(data, bytes):
            outcome.protocol_errors += 1
            return
        try:
            self.executor.vault.put_bytes(artifact_id, data, meta={"kind": kind, "job_id": job_id})
        except Exception as exc:  # a checkpoint that cannot be kept: the job must not go on without it
            outcome.error = {"message": f"a checkpoint could not be stored ({type(exc).__name__})"}
            self.kill("checkpoint_failed")

    def _seal(self, message: dict[str, Any], outcome: Outcome) -> dict[str, Any] | None:
        """A returned model package is checked, then written through the vault by this worker."""
        from bastion.jobs.package import unpack
        from bastion.jobs.runner import store_model

        blob = message.pop("model_package", None)
        fmt = message.pop("model_format", None)
        message.pop("model", None)  # a task cannot name an artifact: only this worker writes them
        if blob is None:
            return message
        try:
            package = unpack(bytes(blob))
            if package.job_id != str(self.spec["job_id"]) or package.model_format != fmt:
                raise ValueError("the package is for another job or format")
            message["model"] = store_model(self.executor.vault, self.spec, bytes(blob), str(fmt))
        except Exception as exc:
            outcome.error = {
                "message": f"the job returned a model that could not be stored ({type(exc).__name__})"
            }
            return None
        return message


def job_inputs(spec: dict[str, Any], vault: Any) -> dict[str, Any]:
    """What the worker decrypts and hands to the task, by job kind."""
    from bastion.jobs.datasets import DatasetRef
    from bastion.jobs.rl import RL_MODEL_TYPES, ray_inputs
    from bastion.jobs.runner import load_dataset

    if spec.get("model_type") == "llm_lora":
        from bastion.llm.on_ray import lora_inputs

        return lora_inputs(spec, vault)
    if "dataset" not in spec:
        return {}
    if spec.get("model_type") in RL_MODEL_TYPES:
        return ray_inputs(DatasetRef.from_json(spec["dataset"]), vault)
    return {"dataset": load_dataset(spec, vault)}


def _reload_auth_settings() -> None:
    """Ray reads RAY_AUTH_MODE and the token once, when first imported; re-read them now, so a process
    that imported ray before its environment was complete still authenticates."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # another Ray version: it reads the environment itself
        return


@functools.cache
def _remote(function: Any) -> Any:
    """One Ray remote function per body, exported to the cluster once per process."""
    import ray

    return ray.remote(function)


def _describe(resources: dict[str, Any]) -> str:
    parts = [f"{resources.get('cpus', 1):g} CPU"]
    if resources.get("gpus"):
        parts.append(f"{resources['gpus']:g} GPU")
    if resources.get("memory_mb"):
        parts.append(f"{resources['memory_mb']:g} MiB")
    return ", ".join(parts)
