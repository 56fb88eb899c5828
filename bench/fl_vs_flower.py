"""Digits, 3 sites, 5 rounds: a whole Bastion federation through real processes against Flower's simulation.

Same task on both sides, measured in the same run, whole process each:

* **model**: the digits MLP (64-64-10), initial weights from the same seed
  (:func:`bastion.ml.fl_init.initial_parameters`), identical on both sides;
* **data**: ``builtin:digits`` split as Bastion's sites split it (:func:`load_site_data`, IID parts
  1/3..3/3 of the training part, 10% local validation each), scored on the same 20% holdout that no
  site trains on (:func:`holdout`);
* **optimiser**: :func:`bastion.ml.fl_models.fit`, SGD lr 0.1, momentum 0.9, batch 32, 1 epoch per
  round, the same per-round seed as Bastion's site trainer, one torch thread per site;
* **rounds**: 5 rounds of FedAvg with all 3 sites; each site also evaluates on its validation part.

Bastion: ``bastion serve`` (fresh SQLite data dir), one ``POST /federations`` with server-side
evaluation on the holdout, and 3 ``bastion fl client`` processes, timed from spawning the server to
the last client's exit; accuracy is the last round's ``server_accuracy``. Flower: one process running
``flwr.simulation.start_simulation`` (Ray backend, 3 virtual clients, ``FedAvg`` with the same
initial parameters and a server-side ``evaluate_fn`` on the holdout), timed from spawn to exit.

Flower runs under ``--flower-python`` (default ``.bench-venv/bin/python``, from ``make bench-peers``).
Without it the bench says so and measures Bastion alone; ``--require-peers`` makes that exit 2.

Usage::

    .venv/bin/python bench/fl_vs_flower.py              # 3 runs per side, medians
    .venv/bin/python bench/fl_vs_flower.py --runs 1
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

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))
FLOWER_PYTHON = str(ROOT / ".bench-venv" / "bin" / "python")
SITES, ROUNDS, SEED = 3, 5, 0
MODEL = {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [64]}
TRAINING = {"epochs": 1, "lr": 0.1, "batch_size": 32, "momentum": 0.9}
EVALUATION = {"local_validation_fraction": 0.1, "server_dataset": "builtin:digits", "holdout_fraction": 0.2}


def site_seed(partition: int, round_number: int) -> int:
    """The seed Bastion's TorchTrainer (seed 0) gives ``fit`` for this site and round."""
    return SEED * 100_003 + round_number * 101 + partition


# -- Flower side (runs under the bench venv's python) ------------------------------------------------
def run_flower() -> None:
    import flwr as fl
    import numpy as np
    import torch
    from flwr.common import ndarrays_to_parameters

    from bastion.federation.sitedata import holdout, load_site_data
    from bastion.ml import fl_models
    from bastion.ml.fl_init import initial_parameters

    names = list(initial_parameters(MODEL, seed=SEED))

    def as_dict(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, arrays, strict=True))

    class DigitsClient(fl.client.NumPyClient):  # type: ignore[misc]
        def __init__(self, partition: int) -> None:
            torch.set_num_threads(1)
            self.partition = partition
            self.data = load_site_data("builtin:digits", MODEL, EVALUATION, partition=(partition, SITES))
            self.model = fl_models.build_model(MODEL)

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            fl_models.set_parameters(self.model, as_dict(parameters))
            fl_models.fit(
                self.model,
                self.data.X_train,
                self.data.y_train,
                epochs=TRAINING["epochs"],
                lr=TRAINING["lr"],
                batch_size=TRAINING["batch_size"],
                momentum=TRAINING["momentum"],
                seed=site_seed(self.partition, int(config["round"])),
            )
            params = fl_models.get_parameters(self.model)
            return [params[n] for n in names], len(self.data.y_train), {}

        def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            fl_models.set_parameters(self.model, as_dict(parameters))
            result = fl_models.evaluate(self.model, self.data.X_val, self.data.y_val)
            return result["loss"], len(self.data.y_val), {"accuracy": result["accuracy"]}

    def client_fn(context: Any) -> Any:
        partition = int(context.node_config["partition-id"]) + 1
        return DigitsClient(partition).to_client()

    X_test, y_test = holdout("builtin:digits", MODEL, EVALUATION)
    evaluator = fl_models.build_model(MODEL)
    scores: dict[int, float] = {}

    def evaluate_fn(server_round: int, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        fl_models.set_parameters(evaluator, as_dict(parameters))
        result = fl_models.evaluate(evaluator, X_test, y_test)
        scores[server_round] = result["accuracy"]
        return result["loss"], {"accuracy": result["accuracy"]}

    init = initial_parameters(MODEL, seed=SEED)
    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=SITES,
        min_evaluate_clients=SITES,
        min_available_clients=SITES,
        initial_parameters=ndarrays_to_parameters([init[n] for n in names]),
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda r: {"round": r},
    )
    fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=SITES,
        config=fl.server.ServerConfig(num_rounds=ROUNDS),
        strategy=strategy,
        client_resources={"num_cpus": 1, "num_gpus": 0.0},
        ray_init_args={"include_dashboard": False, "num_cpus": os.cpu_count() or 1, "log_to_driver": False},
    )
    print(json.dumps({"accuracy": scores[ROUNDS], "flwr": fl.__version__}))


# -- Bastion side -------------------------------------------------------------------------------------
def run_bastion(tmp: Path) -> dict[str, Any]:
    import httpx

    from fl_round import start_server, stop_all

    bastion = [sys.executable, "-m", "bastion.cli.main"]
    t0 = time.perf_counter()
    server, url, keys = start_server(tmp)
    phases: dict[str, float | None] = {"server ready": time.perf_counter() - t0}
    sites: list[subprocess.Popen[bytes]] = []
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": keys["user"]}, timeout=60) as http:
            spec = {
                "name": "digits-vs-flower",
                "model": MODEL,
                "rounds": ROUNDS,
                "min_clients": SITES,
                "training": TRAINING,
                "evaluation": EVALUATION,
                "seed": SEED,
            }
            fid = http.post("/api/v1/federations", json=spec).raise_for_status().json()["id"]
            phases["federation created"] = time.perf_counter() - t0
            for i in range(1, SITES + 1):
                token = http.post(f"/api/v1/federations/{fid}/participants", json={"name": f"site-{i}"})
                cmd = [*bastion, "fl", "client", "--server", url, "--federation", fid]
                cmd += ["--token", token.raise_for_status().json()["token"], "--data", "builtin:digits"]
                cmd += ["--partition", f"{i}/{SITES}", "--state-dir", str(tmp / f"site-{i}"), "--json"]
                sites.append(
                    subprocess.Popen(cmd, stdout=(tmp / f"site-{i}.log").open("wb"), stderr=subprocess.STDOUT)
                )
            phases["sites started"] = time.perf_counter() - t0
            for proc in sites:
                if proc.wait(600) != 0:
                    raise RuntimeError(f"a Bastion site failed; see {tmp}")
            seconds = time.perf_counter() - t0
            rounds = http.get(f"/api/v1/federations/{fid}/rounds").json()["data"]
            phases["rounds (first opened to last closed)"] = _span(rounds)
    finally:
        stop_all(server, sites)
    last = max(rounds, key=lambda r: r["round"])
    return {"seconds": seconds, "accuracy": last["metrics"]["server_accuracy"], "phases": phases}


def _span(rounds: list[dict[str, Any]]) -> float | None:
    """Seconds from the first round's opening (every site joined) to the last one's close."""
    from datetime import datetime

    opened = min(rounds, key=lambda r: r["round"]).get("opened_at")
    closed = max(rounds, key=lambda r: r["round"]).get("closed_at")
    if opened is None or closed is None:
        return None
    return datetime.fromisoformat(closed).timestamp() - datetime.fromisoformat(opened).timestamp()


def flower_available(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import flwr, ray"], capture_output=True, check=False)
    return probe.returncode == 0


def run_flower_process(python: str, tmp: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [python, __file__, "--role", "flower"], capture_output=True, text=True, check=False, cwd=tmp
    )
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"Flower's simulation failed:\n{out.stderr[-3000:]}")
    return {"seconds": seconds, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per side, taken in turn; medians reported")
    parser.add_argument("--flower-python", default=FLOWER_PYTHON)
    parser.add_argument("--require-peers", action="store_true", help="exit 2 unless Flower can run")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "flower":
        run_flower()
        return

    has_flower = Path(args.flower_python).exists() and flower_available(args.flower_python)
    if not has_flower:
        print(
            f"peer missing: flwr[simulation] is not importable by {args.flower_python} (`make bench-peers`)"
        )
        if args.require_peers:
            sys.exit(2)
    bastion_runs: list[dict[str, Any]] = []
    flower_runs: list[dict[str, Any]] = []
    for _ in range(args.runs):
        tmp = Path(tempfile.mkdtemp(prefix="bastion-vs-flower-"))
        try:
            bastion_runs.append(run_bastion(tmp))
            if has_flower:
                flower_runs.append(run_flower_process(args.flower_python, tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    b_time, b_acc = med(r["seconds"] for r in bastion_runs), med(r["accuracy"] for r in bastion_runs)
    if flower_runs:
        f_time, f_acc = med(r["seconds"] for r in flower_runs), med(r["accuracy"] for r in flower_runs)
        print(f"fl_vs_flower_time_ratio: {b_time / f_time:.2f}")
        print(f"fl_vs_flower_accuracy_difference: {b_acc - f_acc:+.4f}")
    print()
    print(f"digits, {SITES} sites, {ROUNDS} rounds, whole process, {args.runs} run(s) per side, medians")
    print(f"  bastion (serve + {SITES} fl client processes): {b_time:6.2f} s  accuracy {b_acc:.4f}")
    print(f"    runs: {[(round(r['seconds'], 2), round(r['accuracy'], 4)) for r in bastion_runs]}")
    for run in bastion_runs:
        marks = ", ".join(f"{k} {v:.2f} s" for k, v in run["phases"].items() if v is not None)
        print(f"    phases: {marks}")
    if flower_runs:
        print(
            f"  flower {flower_runs[0]['flwr']} start_simulation (ray):  {f_time:6.2f} s  accuracy {f_acc:.4f}"
        )
        print(f"    runs: {[(round(r['seconds'], 2), round(r['accuracy'], 4)) for r in flower_runs]}")
    print(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
