"""Privacy figure: breast_cancer federated with secure aggregation + distributed DP, against plain FedAvg.

Three runs, scored on the same held-out 20% of breast_cancer: (1) a federation whose rounds are SecAgg+
sessions and whose sites clip their deltas and add their share of the DP noise before masking, through
the real server and site code (:func:`tests.federation.simulate.simulate`); (2) the same federation
without privacy (sealed updates, sample-weighted FedAvg); (3) the same MLP trained centrally. The
epsilon is the accountant's (RDP, dp-accounting) after the last round, at delta 1e-5, for site-level
DP with every site in every round (q = 1): no amplification by sampling.

Usage::

    .venv/bin/python bench/fl_private_quality.py                       # 10 sites, 10 rounds, sigma 1
    .venv/bin/python bench/fl_private_quality.py --sites 20 --noise 1.5
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.federation.simulate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--noise", type=float, default=1.0, help="noise multiplier sigma")
    parser.add_argument("--clip", type=float, default=1.0, help="L2 clip norm S of a site's delta")
    args = parser.parse_args()

    import torch

    from bastion import logs
    from tests.federation.simulate import centralized, simulate

    logs.configure("warning")
    torch.set_num_threads(1)
    plain: dict[str, Any] = {
        "name": "breast-cancer",
        "model": {"type": "tabular_mlp", "in_features": 30, "num_classes": 2, "hidden": [32]},
        "rounds": args.rounds,
        "min_clients": args.sites,
        "strategy": "fedavg",
        "training": {"epochs": 1, "lr": 0.1, "batch_size": 32, "momentum": 0.9},
        "evaluation": {"local_validation_fraction": 0.0, "server_dataset": "builtin:breast_cancer"},
    }
    private = copy.deepcopy(plain)
    private["privacy"] = {
        "secure_aggregation": {},
        "dp": {"clip_norm": args.clip, "noise_multiplier": args.noise, "mode": "distributed", "delta": 1e-5},
    }
    source = "builtin:breast_cancer"
    started = time.perf_counter()
    secure = simulate(private, source, args.sites)
    secure_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fedavg = simulate(plain, source, args.sites)
    plain_seconds = time.perf_counter() - started
    base = centralized(plain, source)

    last = secure.rounds[-1]["metrics"]
    print(f"ratio_private_to_plain_accuracy: {secure.test_accuracy / fedavg.test_accuracy:.4f}")
    print(f"private_accuracy: {secure.test_accuracy:.4f}")
    print(
        f"epsilon: {last['dp_epsilon']:.3f} (delta {last['dp_delta']:g}, sigma {args.noise}, S {args.clip}, q 1)"
    )
    print(f"plain_fedavg_accuracy: {fedavg.test_accuracy:.4f}")
    print(f"centralized_accuracy: {base:.4f}")
    print(
        "private_accuracy_by_round: "
        + ", ".join(f"{r['metrics']['server_accuracy']:.3f}" for r in secure.rounds)
    )
    print("epsilon_by_round: " + ", ".join(f"{r['metrics']['dp_epsilon']:.2f}" for r in secure.rounds))
    print(f"seconds: private {secure_seconds:.1f}, plain {plain_seconds:.1f}")


if __name__ == "__main__":
    main()
