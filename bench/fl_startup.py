"""Start-up costs of a federation: ``POST /federations`` and ``bastion fl client`` start -> registered.

Both against a baseline measured in the same run on the same real ``bastion serve`` (fresh SQLite
data dir):

* **create**: the latency of ``POST /api/v1/federations`` (digits MLP) against ``GET /api/v1/auth/me``
  with the same key, ``--repeat`` times each, taken in turn; the first create is reported on its own
  (it used to import torch on the request path: 1.36 s);
* **client start**: wall time from spawning ``bastion fl client --json --data builtin:digits`` to its
  ``joined`` event (registered: data loaded, model warmed up, key registered), against spawning a
  bare Python script that makes one HTTP request to the same server.

Usage::

    .venv/bin/python bench/fl_startup.py
    .venv/bin/python bench/fl_startup.py --repeat 3 --clients 2   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fl_round import start_server, stop_all

BASTION = [sys.executable, "-m", "bastion.cli.main"]
DIGITS = {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [64]}


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def client_until_joined(url: str, fid: str, token: str, state: Path) -> float:
    """Seconds from spawning the CLI client to its ``joined`` event; the client is then stopped."""
    cmd = [*BASTION, "fl", "client", "--server", url, "--federation", fid, "--token", token]
    cmd += ["--data", "builtin:digits", "--partition", "1/3", "--state-dir", str(state), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line).get("event") == "joined":
                return time.perf_counter() - t0
        raise RuntimeError(f"client exited ({proc.wait()}) before joining")
    finally:
        proc.kill()
        proc.wait()


def bare_client(url: str) -> float:
    code = f"import httpx; httpx.get({url + '/api/v1/health'!r}).raise_for_status()"
    return timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="creates (and baseline requests)")
    parser.add_argument("--clients", type=int, default=5, help="client starts (and bare scripts)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bastion-fl-startup-"))
    server, url, keys = start_server(tmp, BASTION_RATE_LIMIT="100000/minute")
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": keys["user"]}, timeout=120) as http:
            http.get("/api/v1/auth/me").raise_for_status()
            creates, mes, fids = [], [], []
            for i in range(args.repeat):
                body = {"name": f"startup-{i}", "model": DIGITS, "rounds": 5, "min_clients": 3}
                t0 = time.perf_counter()
                resp = http.post("/api/v1/federations", json=body)
                creates.append(time.perf_counter() - t0)
                resp.raise_for_status()
                fids.append(resp.json()["id"])
                mes.append(timed(lambda: http.get("/api/v1/auth/me").raise_for_status()))
            starts, bares = [], []
            for i in range(args.clients):
                token = http.post(
                    f"/api/v1/federations/{fids[0]}/participants", json={"name": f"site-{i}"}
                ).json()["token"]
                starts.append(client_until_joined(url, fids[0], token, tmp / f"state-{i}"))
                bares.append(bare_client(url))
    finally:
        stop_all(server, [])
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    print(f"fl_create_ms: {1e3 * med(creates):.1f}")
    print(f"fl_create_ratio_vs_auth_me: {med(creates) / med(mes):.2f}")
    print(f"fl_client_start_to_registered_s: {med(starts):.2f}")
    print(f"fl_client_start_ratio_vs_bare_script: {med(starts) / med(bares):.2f}")
    print()
    print(f"POST /federations (ms): first {1e3 * creates[0]:.1f}, all {[round(1e3 * c, 1) for c in creates]}")
    print(f"GET /auth/me (ms):      {[round(1e3 * m, 1) for m in mes]}")
    print(f"bastion fl client -> joined (s): {[round(s, 2) for s in starts]}")
    print(f"bare python + one request (s):  {[round(b, 2) for b in bares]}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
