"""Parse and de-identify an upload in a separate, resource-limited process.

Parsing untrusted tables costs memory and CPU no size check can fully predict (openpyxl on a
million-row sheet, pandas on a row of commas), and in the API process it would hold the GIL and
the heap of every other request. So the whole pipeline (sniff, budget, parse, de-identify,
describe, write Parquet) runs in ``python -m bastion.data.sandbox`` with limits set by the child on
itself before it reads a byte: address space (``RLIMIT_AS`` = what the interpreter maps after its
imports + the memory setting), CPU seconds (``RLIMIT_CPU``), no file writes (``RLIMIT_FSIZE`` 0), a
lower priority (nice 10), one thread per pool. The parent adds a wall-clock timeout and kills it.

Wire format (no pickle: the child's output derives from untrusted bytes). Parent → child stdin:
one JSON line (limits, policy text, pseudonym key in hex), then the upload bytes to EOF. Child →
parent stdout: an 8-byte big-endian length, that many bytes of JSON (``{"ok": {...}}`` or
``{"error": {"status", "code", "message"}}``), then the Parquet bytes of the de-identified table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from bastion.errors import BastionError, Invalid, PayloadTooLarge, UnsupportedMedia

_log = structlog.get_logger("bastion.sandbox")
_HEADER = 8
_STATUS_ERRORS: dict[int, type[BastionError]] = {413: PayloadTooLarge, 415: UnsupportedMedia, 422: Invalid}
MAX_POLICY_DEPTH = 32


@dataclass(frozen=True)
class ParseLimits:
    """What one upload's parse may use; see ``BASTION_PARSE_*`` and ``BASTION_MAX_DECODED_BYTES``."""

    max_bytes: int = 100 * 1024 * 1024
    max_decoded: int = 256 * 1024 * 1024
    memory_mb: int = 1024
    cpu_seconds: int = 60
    timeout_seconds: float = 120.0
    parallel: int = 2


@dataclass
class Prepared:
    """The de-identified table and its description, as the catalog stores them."""

    fmt: str
    rows: int
    columns: int
    parquet: bytes
    schema: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    deid_actions: dict[str, str] = field(default_factory=dict)


def check_policy_text(policy: str | None) -> None:
    """Refuse a policy nested deeper than any real one before a recursive parser sees it."""
    if not policy:
        return
    depth = deepest = 0
    for ch in policy:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_POLICY_DEPTH:
                raise Invalid(f"policy is nested more than {MAX_POLICY_DEPTH} levels deep", code="bad_policy")
        elif ch in "]}":
            depth -= 1


class Sandbox:
    """Runs :func:`prepare` in child processes, at most ``limits.parallel`` at once."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.parallel)

    def run(self, data: bytes, *, policy: str | None, hmac_key: bytes) -> Prepared:
        check_policy_text(policy)
        header = {
            "policy": policy,
            "hmac_key": hmac_key.hex(),
            "max_bytes": self.limits.max_bytes,
            "max_decoded": self.limits.max_decoded,
            "memory_mb": self.limits.memory_mb,
            "cpu_seconds": self.limits.cpu_seconds,
        }
        stdin = json.dumps(header).encode() + b"\n" + data
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG", "LC_ALL")}
        # Arrow's jemalloc/mimalloc pools reserve large address ranges up front; under RLIMIT_AS the
        # system allocator is the one that fails only when memory really runs out.
        env.update(
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            ARROW_DEFAULT_MEMORY_POOL="system",
        )
        with self._slots:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bastion.data.sandbox"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
            try:
                out, err = proc.communicate(stdin, timeout=self.limits.timeout_seconds)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise PayloadTooLarge(
                    f"parsing the upload took longer than {self.limits.timeout_seconds:g} s "
                    "(BASTION_PARSE_TIMEOUT_SECONDS)",
                    code="parse_limit_exceeded",
                ) from None
        return _read_result(out, err, proc.returncode, self.limits)


def _read_result(out: bytes, err: bytes, returncode: int, limits: ParseLimits) -> Prepared:
    size = int.from_bytes(out[:_HEADER], "big") if len(out) >= _HEADER else -1
    if size < 0 or len(out) < _HEADER + size:
        _log.warning("sandbox_died", returncode=returncode, stderr=err[-2000:].decode("utf-8", "replace"))
        raise PayloadTooLarge(
            f"parsing the upload exceeded its limits ({limits.memory_mb} MiB, {limits.cpu_seconds} s "
            "of CPU: BASTION_PARSE_MEMORY_MB, BASTION_PARSE_CPU_SECONDS)",
            code="parse_limit_exceeded",
        )
    result = json.loads(out[_HEADER : _HEADER + size])
    if "error" in result:
        e = result["error"]
        cls = _STATUS_ERRORS.get(int(e["status"]), BastionError)
        exc = cls(str(e["message"]), code=str(e["code"]), **e.get("details", {}))
        exc.status_code = int(e["status"])
        raise exc
    ok = result["ok"]
    return Prepared(parquet=out[_HEADER + size :], **ok)


# ----------------------------------------------------------------------------- the child


def prepare(
    data: bytes, *, policy: str | None, hmac_key: bytes, max_bytes: int, max_decoded: int
) -> Prepared:
    """The whole upload pipeline; the child runs it (tests may call it directly)."""
    import io

    from bastion.data.deid import deidentify, hidden_value_columns, load_policy
    from bastion.data.ingest import describe, read_upload

    parsed_policy = load_policy(policy)
    fmt, frame = read_upload(data, max_bytes=max_bytes, max_decoded=max_decoded)
    del data
    clean, actions = deidentify(frame, parsed_policy, hmac_key=hmac_key)
    del frame
    if clean.shape[1] == 0:
        raise Invalid(
            "nothing is left after de-identification: every column was an identifier",
            code="empty_after_deid",
        )
    stats = describe(clean, hide_values=hidden_value_columns(actions))
    buf = io.BytesIO()
    clean.to_parquet(buf, index=False)
    return Prepared(
        fmt=fmt,
        rows=int(clean.shape[0]),
        columns=int(clean.shape[1]),
        parquet=buf.getvalue(),
        schema=[s.model_dump(mode="json") for s in stats],
        actions=[a.model_dump(mode="json") for a in actions],
        deid_actions={a.column: a.action for a in actions if a.action != "keep"},
    )


def _limit_self(memory_mb: int, cpu_seconds: int) -> None:
    import resource

    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    address_space = mapped + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    os.nice(10)


def _emit(header: dict[str, Any], body: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    sys.stdout.buffer.write(len(raw).to_bytes(_HEADER, "big") + raw)
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


def main() -> None:
    # Import everything the pipeline needs first, then cap the address space above what is mapped.
    import pandas  # noqa: F401
    import pyarrow as pa
    import pyarrow.parquet

    import bastion.data.deid
    import bastion.data.ingest  # noqa: F401

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    header = json.loads(sys.stdin.buffer.readline())
    _limit_self(int(header["memory_mb"]), int(header["cpu_seconds"]))
    try:
        data = sys.stdin.buffer.read()
        prepared = prepare(
            data,
            policy=header["policy"],
            hmac_key=bytes.fromhex(header["hmac_key"]),
            max_bytes=int(header["max_bytes"]),
            max_decoded=int(header["max_decoded"]),
        )
    except BastionError as exc:
        details = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | bool)}
        _emit(
            {
                "error": {
                    "status": exc.status_code,
                    "code": exc.code,
                    "message": exc.message,
                    "details": details,
                }
            }
        )
        return
    except (MemoryError, RecursionError):
        _emit(
            {
                "error": {
                    "status": 413,
                    "code": "parse_limit_exceeded",
                    "message": "the upload is too large to parse",
                }
            }
        )
        return
    except Exception as exc:  # a parser bug: no value of the data in the message
        print(f"sandbox: {type(exc).__name__}", file=sys.stderr)
        _emit(
            {"error": {"status": 422, "code": "unreadable_upload", "message": "the upload could not be read"}}
        )
        return
    body = prepared.parquet
    meta = {k: v for k, v in prepared.__dict__.items() if k != "parquet"}
    _emit({"ok": meta}, body)


if __name__ == "__main__":
    main()
