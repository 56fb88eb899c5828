"""Malicious requests against a real ``bastion serve``: the API's memory and other users' latency.

For each case (the penetration test's items 1-3, issue 11) a fresh server starts with a fresh data
dir; the case's request runs in a thread while another user polls ``GET /api/v1/auth/me``. Prints
``<case>_latency_ratio`` (others' median latency during the request / their idle median, measured
just before in the same run; goal <= 2) first, then the raw figures: status, seconds, and the growth
of the API process's peak RSS (``VmHWM``; goal < 256 MiB).

    .venv/bin/python bench/upload_limits.py                 # every case
    .venv/bin/python bench/upload_limits.py parquet csv     # some of them
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/upload_limits.py   # another tree (before/after)
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.bombs import comma_bomb, parquet_bomb, xlsx_bomb

KEY_LINE = re.compile(r"(admin|user) API key:\s+(bst_\w+)")
MLP = {"type": "tabular_mlp", "in_features": 100_000, "hidden": [2048], "num_classes": 2}
CASES: dict[str, Callable[[], tuple[str, bytes, bool]]] = {
    "parquet": lambda: ("/api/v1/datasets", parquet_bomb(), True),
    "csv": lambda: ("/api/v1/datasets", comma_bomb(1_000_000), True),
    "xlsx": lambda: ("/api/v1/datasets", xlsx_bomb(100_000), True),
    "site_json": lambda: (
        "/api/v1/federations/x/site/register",
        b'{"a":"' + b"x" * 80_000_000 + b'"}',
        False,
    ),
    "federation": lambda: ("/api/v1/federations", json.dumps({"name": "big", "model": MLP}).encode(), True),
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_mib(pid: int) -> float:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def _latencies(url: str, key: str, until: Callable[[], bool], at_least: int) -> list[float]:
    out: list[float] = []
    with httpx.Client(base_url=url) as client:
        while not until() or len(out) < at_least:
            start = time.perf_counter()
            client.get("/api/v1/auth/me", headers={"X-API-Key": key})
            out.append(time.perf_counter() - start)
    return out


def run_case(name: str) -> dict[str, object]:
    path, body, authenticated = CASES[name]()
    data = tempfile.mkdtemp(prefix="bastion-bench-")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        BASTION_DATA_DIR=f"{data}/.bastion",
        BASTION_MASTER_KEY="bench-master-" + "m" * 40,
        BASTION_JWT_SECRET="bench-jwt-" + "j" * 40,
        BASTION_RATE_LIMIT="100000/minute",
    )
    log = Path(data) / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=data,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/api/v1/health").status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        keys_file = Path(data) / ".bastion" / "bootstrap-keys.txt"
        keys = dict(KEY_LINE.findall(keys_file.read_text() if keys_file.exists() else log.read_text()))
        idle = statistics.median(_latencies(url, keys["admin"], lambda: True, 40))
        before = _peak_mib(proc.pid)
        result: dict[str, object] = {}

        def send() -> None:
            headers = {
                "content-type": "application/octet-stream"
                if path.endswith("datasets")
                else "application/json"
            }
            if authenticated:
                headers["X-API-Key"] = keys["user"]
            start = time.perf_counter()
            try:
                result["status"] = httpx.post(
                    url + path, content=body, headers=headers, timeout=1200
                ).status_code
            except httpx.HTTPError as exc:
                result["status"] = type(exc).__name__
            result["seconds"] = round(time.perf_counter() - start, 2)

        sender = threading.Thread(target=send)
        sender.start()
        busy = _latencies(url, keys["admin"], lambda: not sender.is_alive(), 10)
        sender.join()
        return {
            **result,
            "rss_growth_mib": round(_peak_mib(proc.pid) - before, 1),
            "idle_ms": round(idle * 1e3, 2),
            "during_ms": round(statistics.median(busy) * 1e3, 2),
            "latency_ratio": round(statistics.median(busy) / idle, 2),
        }
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    results = {name: run_case(name) for name in names}
    for name, r in results.items():
        print(f"{name}_latency_ratio: {r['latency_ratio']}")
    for name, r in results.items():
        print(f"{name}: {json.dumps(r)}")


if __name__ == "__main__":
    main()
