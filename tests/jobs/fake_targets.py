"""Job targets for tests: they run inside real job processes, in place of real training.

Each leaves marker files in $BASTION_TEST_JOB_DIR so tests can see what ran, when and where.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bastion.jobs.child import JobContext


def _dir() -> Path:
    return Path(os.environ["BASTION_TEST_JOB_DIR"])


def _mark(ctx: JobContext, what: str, **extra: Any) -> None:
    name = f"{ctx.spec['job_id']}.{ctx.spec['attempt']}.{what}"
    _write_atomic(_dir() / name, json.dumps({"pid": os.getpid(), "t": time.time(), **extra}))


def _write_atomic(path: Path, text: str) -> None:
    """Temp file, then rename: a test polling for ``path`` never reads it empty or half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def quick(ctx: JobContext) -> dict[str, Any]:
    """Three epochs of made-up metrics, a line on stdout, then a result."""
    _mark(ctx, "started")
    print("hello from the job")
    for epoch in range(1, 4):
        ctx.progress(epoch / 4, {"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10})
    ctx.progress(0.9, {"stage": "evaluate"})
    ctx.log("evaluated")
    return {"results": {"accuracy": 0.8, "model_type": ctx.spec["model_type"]}, "history": []}


def record(ctx: JobContext) -> dict[str, Any]:
    """Record this run's interval (start and end wall-clock times) and the worker that ran it."""
    start = time.time()
    time.sleep(0.02)
    end = time.time()
    path = _dir() / f"{ctx.spec['job_id']}.{ctx.spec['attempt']}.{os.getpid()}.interval"
    _write_atomic(path, json.dumps({"start": start, "end": end, "worker": ctx.spec.get("worker_id")}))
    return {"results": {"ok": True}}


def block(ctx: JobContext) -> dict[str, Any]:
    """Run until the test creates ``<job id>.release`` (or forever, until killed)."""
    _mark(ctx, "started")
    print("blocking", flush=True)
    ctx.progress(0.25, {"epoch": 1, "train_loss": 0.5})
    release = _dir() / f"{ctx.spec['job_id']}.release"
    while not release.exists():
        ctx.progress(0.5, {"stage": "waiting"})
        time.sleep(0.02)
    return {"results": {"released": True}}


def fail(ctx: JobContext) -> dict[str, Any]:
    print("about to fail", flush=True)
    raise ValueError("boom: the data was bad")


def die(ctx: JobContext) -> dict[str, Any]:
    _mark(ctx, "started")
    print("dying now", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def silent_exit(ctx: JobContext) -> dict[str, Any]:
    sys.stderr.write("fatal: giving up\n")
    sys.stderr.flush()
    os._exit(3)


def hog(ctx: JobContext) -> dict[str, Any]:
    """Ask for far more memory than the job's limit allows."""
    print("allocating", flush=True)
    blob = bytearray(4 * 1024 * 1024 * 1024)
    return {"results": {"size": len(blob)}}


def chatty(ctx: JobContext) -> dict[str, Any]:
    for i in range(300):
        print(f"line {i}")
    return {"results": {}}


def env(ctx: JobContext) -> dict[str, Any]:
    """Report which secrets leaked into the environment (none may)."""
    names = ("BASTION_MASTER_KEY", "BASTION_JWT_SECRET", "BASTION_DATABASE_URL")
    return {"results": {"env": [n for n in names if n in os.environ], "spec_keys": sorted(ctx.spec)}}


def packaged(ctx: JobContext) -> dict[str, Any]:
    """Store a (fake) model package in the vault, as the real runner does, without training."""
    from bastion.jobs.package import ModelPackage, pack
    from bastion.jobs.runner import artifact_id_for

    job_id, attempt = str(ctx.spec["job_id"]), int(ctx.spec["attempt"])
    blob = pack(
        ModelPackage(
            job_id, str(ctx.spec["model_type"]), "skops", {"task": "classification"}, b"PK\x03\x04xyz"
        )
    )
    info = ctx.vault().put_bytes(artifact_id_for(job_id, attempt), blob, meta={"kind": "job-model"})
    return {
        "results": {"accuracy": 0.5},
        "model": {"artifact_id": info.artifact_id, "version": info.version, "format": "skops"},
    }


def foreign_model(ctx: JobContext) -> dict[str, Any]:
    """Claim somebody else's artifact as this job's model: the worker must refuse it."""
    print("claiming a model", flush=True)
    return {"results": {}, "model": {"artifact_id": "dataset-1234", "version": 1, "format": "skops"}}


def burn(ctx: JobContext) -> dict[str, Any]:
    """Spin on the CPU (until the CPU-time limit stops it, or 60 s pass)."""
    end = time.monotonic() + 60
    n = 0
    while time.monotonic() < end:
        n += 1
    return {"results": {"n": n}}


def many_files(ctx: JobContext) -> dict[str, Any]:
    """Open far more files than the job's open-files limit allows."""
    handles = [open(os.devnull) for _ in range(200)]  # noqa: SIM115 - held open on purpose
    return {"results": {"opened": len(handles)}}


def big_write(ctx: JobContext) -> dict[str, Any]:
    """Write a file past the job's output-size limit."""
    with open(_dir() / "big.bin", "wb") as fh:
        fh.write(b"x" * (3 * 1024 * 1024))
    return {"results": {}}


def snoop(ctx: JobContext) -> dict[str, Any]:
    """A hostile job: read its own dataset, then try every way to another user's data it can reach.

    Writes what it received (spec, secrets, environment) and what each attempt gave to
    ``<job id>.<attempt>.snoop``; ``victim.json`` in the job directory names the other artifact.
    """
    import base64

    from bastion.vault import envelope

    victim = json.loads((_dir() / "victim.json").read_text())
    vault = ctx.vault()
    own = str(ctx.spec["dataset"]["artifact_id"])
    tried: dict[str, Any] = {"own_bytes": len(vault.get_bytes(own)), "listed": vault.list()}
    for name, attempt in (
        ("granted_read", lambda: vault.get_bytes(victim["artifact"])),
        ("granted_write", lambda: vault.put_bytes(victim["artifact"], b"overwrite")),
    ):
        try:
            attempt()
            tried[name] = "succeeded"
        except Exception as exc:
            tried[name] = getattr(exc, "code", type(exc).__name__)
    # The raw file is readable by this process's user: try each data key it holds on it.
    opened = []
    for grant in ctx._secrets.get("vault", {}).get("reads", []):
        with open(victim["path"], "rb") as f:
            try:
                handle = envelope.open_with_key(
                    f,
                    victim["artifact"],
                    victim["version"],
                    base64.b64decode(grant["key"]),
                    expected_binding=None,
                )
                from bastion.vault.store import read_segments

                b"".join(read_segments(handle, victim["artifact"], victim["version"], True))
                opened.append("decrypted")
            except Exception as exc:
                opened.append(type(exc).__name__)
    tried["raw_file_with_own_keys"] = opened
    received = {"spec": ctx.spec, "secrets": ctx._secrets, "environ": dict(os.environ)}
    _write_atomic(
        _dir() / f"{ctx.spec['job_id']}.{ctx.spec['attempt']}.snoop",
        json.dumps({"received": received, "tried": tried}),
    )
    return {"results": {"tried": tried}}
