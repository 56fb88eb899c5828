"""Per-round overhead of a federation over loopback: 10 site processes, Bastion against a bare FastAPI app.

Bastion: a real ``bastion serve`` (fresh SQLite data dir) and N ``SiteClient`` processes whose training
is a no-op (the parameters plus a small perturbation), so a round's wall time is all overhead: sites
noticing the new round (long poll), downloading and verifying the signed model, sealing and signing
their update, the server verifying, opening, validating, storing (vault + database + audit) and folding
each one, then aggregating, storing and registering the new global model and opening the next round.
Local training time as the sites measured it (fit + evaluate) is subtracted anyway.

Baseline, same run, same site count and model: a bare FastAPI app in its own uvicorn process that
serves raw safetensors, takes raw safetensors updates (no auth, crypto, database or vault), averages
them in memory and long-polls the same way.

Round 1 is excluded (first contact, warm-up). Prints ``name: value`` lines first, then raw figures::

    .venv/bin/python bench/fl_round.py                       # 10 sites, 10 rounds, digits MLP (4.8k params)
    .venv/bin/python bench/fl_round.py --hidden 512,512      # a larger model (~300k params)
    .venv/bin/python bench/fl_round.py --sites 4 --rounds 4  # quick run
    .venv/bin/python bench/fl_round.py --secure              # Bastion rounds as SecAgg+ sessions
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import Request

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40
_KEY_LINE = re.compile(r"(admin|user) API key:\s+(bst_\w+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def model_spec(hidden: list[int]) -> dict[str, Any]:
    return {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": hidden}


def initial_params(hidden: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [64, *hidden, 10]
    out: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        out[f"net.{2 * i}.weight"] = rng.uniform(-0.1, 0.1, (b, a)).astype(np.float32)
        out[f"net.{2 * i}.bias"] = np.zeros(b, np.float32)
    return out


def perturb(params: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: v + rng.standard_normal(v.shape, np.float32) * 1e-3 for k, v in params.items()}


# -- Bastion: sites ----------------------------------------------------------------------------


def run_bastion_site(args: argparse.Namespace) -> None:
    from bastion.client.site.base import FitResult, SiteEvent, SiteTrainer
    from bastion.client.site.runtime import SiteClient

    class Noop(SiteTrainer):
        def __init__(self) -> None:
            self.rng = np.random.default_rng(os.getpid())

        def fit(self, params: dict[str, np.ndarray], config: Any) -> FitResult:
            return FitResult(perturb(params, self.rng), 100, {"train_loss": 0.1})

    out = Path(args.out)

    def on_event(event: SiteEvent) -> None:
        if event.kind == "sent":
            with out.open("a") as fh:
                fh.write(json.dumps({"round": event.round, "fit_seconds": event.data["fit_seconds"]}) + "\n")

    site = SiteClient(
        args.server,
        args.federation,
        args.token,
        Noop(),
        state_dir=Path(args.state_dir),
        poll_timeout=30,
        on_event=on_event,
    )
    site.run()


# -- the baseline: server and sites --------------------------------------------------------------


def run_bare_server(args: argparse.Namespace) -> None:
    import uvicorn
    from fastapi import FastAPI, Response
    from safetensors.numpy import load, save

    app = FastAPI()
    lock = threading.Lock()
    st: dict[str, Any] = {
        "round": 1,
        "n": 0,
        "sum": None,
        "params": initial_params(args.hidden),
        "opened": time.time(),
        "history": [],
    }

    @app.get("/model")
    def model() -> Response:
        with lock:
            return Response(save(st["params"]), headers={"x-round": str(st["round"])})

    @app.get("/info")
    async def info(wait_round: int | None = None) -> dict[str, Any]:
        until = time.monotonic() + 30
        while wait_round is not None and st["round"] == wait_round and time.monotonic() < until:
            await asyncio.sleep(0.02)
        return {"round": st["round"], "done": st["round"] > args.rounds}

    @app.post("/update")
    async def update(request: Request, round: int, samples: int) -> dict[str, Any]:
        tensors = load(await request.body())
        with lock:
            if round != st["round"]:
                return {"accepted": False}
            if st["sum"] is None:
                st["sum"] = {k: np.zeros(v.shape, np.float64) for k, v in tensors.items()}
            for k, v in tensors.items():
                st["sum"][k] += samples * v
            st["n"] += samples
            if st["n"] == samples * args.sites:
                st["params"] = {k: (v / st["n"]).astype(np.float32) for k, v in st["sum"].items()}
                now = time.time()
                st["history"].append({"round": st["round"], "opened": st["opened"], "closed": now})
                st["round"], st["n"], st["sum"], st["opened"] = st["round"] + 1, 0, None, now
        return {"accepted": True}

    @app.get("/history")
    def history() -> list[dict[str, Any]]:
        return list(st["history"])

    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


def run_bare_site(args: argparse.Namespace) -> None:
    from safetensors.numpy import load, save

    rng = np.random.default_rng(os.getpid())
    with httpx.Client(base_url=args.server, timeout=60) as http, Path(args.out).open("w") as out:
        state = http.get("/info").json()
        sent: set[int] = set()
        while not state["done"]:
            number = state["round"]
            if number in sent:
                state = http.get("/info", params={"wait_round": number}).json()
                continue
            sent.add(number)
            params = load(http.get("/model").content)
            started = time.perf_counter()
            update = perturb(params, rng)
            fit = time.perf_counter() - started
            http.post("/update", params={"round": number, "samples": 100}, content=save(update))
            out.write(json.dumps({"round": number, "fit_seconds": fit}) + "\n")
            out.flush()
            state = http.get("/info", params={"wait_round": number}).json()


# -- orchestration ---------------------------------------------------------------------------------


def spawn(role: str, *extra: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--role", role, *extra]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def fits(paths: list[Path]) -> dict[int, float]:
    worst: dict[int, float] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            worst[row["round"]] = max(worst.get(row["round"], 0.0), row["fit_seconds"])
    return worst


def overheads(spans: list[tuple[int, float, float]], worst_fit: dict[int, float]) -> list[float]:
    return [(end - start - worst_fit.get(number, 0.0)) * 1000 for number, start, end in spans if number > 1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc), to tell server work from site work."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def all_pages(url: str, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    """Every item of a paginated collection (``Page``: ``data`` + ``next_cursor``)."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {**params, "limit": 100}
    while True:
        page = httpx.get(url, params=query, headers=headers, timeout=60).raise_for_status().json()
        items += page["data"]
        if not page["next_cursor"]:
            return items
        query["cursor"] = page["next_cursor"]


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def start_server(tmp: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """A real ``bastion serve`` on a free port, fresh data dir under ``tmp``: (process, URL, bootstrap keys)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        BASTION_DATA_DIR=str(tmp / "data"), BASTION_MASTER_KEY=MASTER, BASTION_JWT_SECRET=JWT, **extra_env
    )
    log = tmp / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/api/v1/health")
    except BaseException:
        server.kill()
        server.wait()
        raise
    keys_file = tmp / "data" / "bootstrap-keys.txt"  # without a terminal the keys go to this 0600 file
    text = log.read_text() + (keys_file.read_text() if keys_file.exists() else "")
    return server, url, dict(_KEY_LINE.findall(text))


def stop_all(server: subprocess.Popen[bytes], sites: list[subprocess.Popen[bytes]]) -> None:
    """Kill the site processes still running, then stop the server."""
    for proc in sites:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    server.terminate()
    server.wait(30)


def bench_bastion(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server, url, keys = start_server(tmp, BASTION_RATE_LIMIT="100000/minute", PYTHONUNBUFFERED="1")
    sites: list[subprocess.Popen[bytes]] = []
    try:
        user, admin = {"X-API-Key": keys["user"]}, {"X-API-Key": keys["admin"]}
        spec = {
            "name": "bench",
            "model": model_spec(args.hidden),
            "rounds": args.rounds,
            "min_clients": args.sites,
            "round_timeout_s": 3600,
            "evaluation": {"local_validation_fraction": 0},
        }
        if args.secure:
            spec["privacy"] = {"secure_aggregation": {"value_range": 1.0}}
        fid = httpx.post(url + "/api/v1/federations", json=spec, headers=user, timeout=120).json()["id"]
        outs = []
        cpu_before = cpu_seconds(server.pid)
        for i in range(args.sites):
            token = httpx.post(
                f"{url}/api/v1/federations/{fid}/participants", json={"name": f"s{i}"}, headers=user
            ).json()["token"]
            outs.append(tmp / f"bastion-site-{i}.jsonl")
            sites.append(
                spawn(
                    "bastion-site",
                    "--server",
                    url,
                    "--federation",
                    fid,
                    "--token",
                    token,
                    "--state-dir",
                    str(tmp / f"state-{i}"),
                    "--out",
                    str(outs[-1]),
                    log=tmp / f"bastion-site-{i}.log",
                )
            )
        for proc in sites:
            if proc.wait(900) != 0:
                raise RuntimeError("a Bastion site failed; see " + str(tmp))
        cpu_after = cpu_seconds(server.pid)
        server_cpu = (
            None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / args.rounds
        )
        rounds = all_pages(f"{url}/api/v1/federations/{fid}/rounds", user)
        events = all_pages(url + "/api/v1/admin/audit", admin, action="fl.")
    finally:
        stop_all(server, sites)
    spans = [(r["round"], ts(r["opened_at"]), ts(r["closed_at"])) for r in rounds]
    closes: dict[int, float] = {}
    last_update: dict[int, float] = {}
    for e in events:
        number = e["details"].get("round")
        if e["action"] == "fl.round.close":
            closes[number] = ts(e["ts"])
        elif e["action"] == "fl.update" and e["outcome"] == "success":
            last_update[number] = max(last_update.get(number, 0.0), ts(e["ts"]))
    close_ms = [(closes[n] - last_update[n]) * 1000 for n in closes if n in last_update and n > 1]
    worst = fits(outs)
    return {
        "overheads_ms": overheads(spans, worst),
        "close_ms": close_ms,
        "fit_ms": worst,
        "server_cpu": server_cpu,
    }


def bench_bare(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = spawn(
        "bare-server",
        "--port",
        str(port),
        "--rounds",
        str(args.rounds),
        "--sites",
        str(args.sites),
        "--hidden",
        ",".join(map(str, args.hidden)),
        log=tmp / "bare-server.log",
    )
    sites: list[subprocess.Popen[bytes]] = []
    try:
        wait_http(url + "/info")
        outs = [tmp / f"bare-site-{i}.jsonl" for i in range(args.sites)]
        sites = [
            spawn("bare-site", "--server", url, "--out", str(o), log=tmp / f"bare-site-{i}.log")
            for i, o in enumerate(outs)
        ]
        for proc in sites:
            if proc.wait(900) != 0:
                raise RuntimeError("a bare site failed; see " + str(tmp))
        history = httpx.get(url + "/history").json()
    finally:
        for proc in sites:
            if proc.poll() is None:
                proc.kill()
        server.terminate()
        server.wait(30)
    spans = [(h["round"], h["opened"], h["closed"]) for h in history]
    return {"overheads_ms": overheads(spans, fits(outs))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",") if x], default=[64])
    parser.add_argument("--keep", action="store_true", help="keep the logs and data directory")
    parser.add_argument(
        "--secure", action="store_true", help="every Bastion round a SecAgg+ session (4 stages over HTTP)"
    )
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    for name in ("server", "federation", "token", "state-dir", "out"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    roles = {"bastion-site": run_bastion_site, "bare-server": run_bare_server, "bare-site": run_bare_site}
    if args.role in roles:
        roles[args.role](args)
        return

    params = sum(v.size for v in initial_params(args.hidden).values())
    tmp = Path(tempfile.mkdtemp(prefix="bastion-fl-bench-"))
    try:
        bastion = bench_bastion(args, tmp)
        bare = bench_bare(args, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    b, base = bastion["overheads_ms"], bare["overheads_ms"]
    print(f"fl_round_overhead_ms: {statistics.median(b):.1f}")
    print(f"fl_round_overhead_ratio_vs_bare: {statistics.median(b) / statistics.median(base):.2f}")
    print(f"fl_round_close_ms: {statistics.median(bastion['close_ms']):.1f}")
    print()
    print(
        f"{args.sites} site processes, {args.rounds} rounds (round 1 excluded), "
        f"{'SecAgg+ sessions, ' if args.secure else ''}model {params} float32 parameters "
        f"({params * 4 / 1024:.0f} KiB), loopback, {os.cpu_count()} CPUs"
    )
    print("per-round overhead = round wall time (server clock) - slowest site's local fit; milliseconds")
    for name, values in (("bastion", b), ("bare fastapi", base)):
        print(
            f"{name:>13}: median {statistics.median(values):7.1f}  mean {statistics.mean(values):7.1f}  "
            f"min {min(values):7.1f}  max {max(values):7.1f}  rounds {[round(v, 1) for v in values]}"
        )
    print(
        f"bastion close (last update admitted -> next round open): {[round(v, 1) for v in bastion['close_ms']]}"
    )
    print(
        f"bastion slowest local fit per round (s): "
        f"{ {k: round(v, 4) for k, v in sorted(bastion['fit_ms'].items())} }"
    )
    if bastion["server_cpu"] is not None:
        print(
            f"bastion server process CPU per round (registration included): {1000 * bastion['server_cpu']:.0f} ms"
        )


if __name__ == "__main__":
    main()
