"""Quality figure: FedAvg on digits split across sites vs centralized training of the same model.

The federation runs through the real server and site code in one process
(:func:`tests.federation.simulate.simulate`): every update is sealed, signed, admitted and folded.
The baseline trains the same MLP on the pooled training data for rounds x epochs epochs with the same
optimizer settings. Both are scored on the same held-out 20% of digits, which no site trains on.

Usage::

    .venv/bin/python bench/fl_quality.py                 # 5 IID sites, 10 rounds (the issue's figure)
    .venv/bin/python bench/fl_quality.py --alpha 0.5     # non-IID (Dirichlet) split, for comparison
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.federation.simulate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=None, help="Dirichlet alpha (default: IID)")
    parser.add_argument("--strategy", default="fedavg")
    args = parser.parse_args()

    import torch

    from bastion import logs
    from tests.federation.simulate import centralized, simulate

    logs.configure("warning")
    torch.set_num_threads(1)
    spec = {
        "name": "digits-quality",
        "model": {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [64]},
        "rounds": args.rounds,
        "min_clients": args.sites,
        "strategy": args.strategy,
        "training": {"epochs": 1, "lr": 0.1, "batch_size": 32, "momentum": 0.9},
        "evaluation": {"local_validation_fraction": 0.1, "server_dataset": "builtin:digits"},
    }
    started = time.perf_counter()
    fed = simulate(spec, "builtin:digits", args.sites, alpha=args.alpha)
    fed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    base = centralized(spec, "builtin:digits")
    base_seconds = time.perf_counter() - started

    print(f"federated_accuracy: {fed.test_accuracy:.4f}")
    print(f"centralized_accuracy: {base:.4f}")
    print(f"gap_points: {100 * (base - fed.test_accuracy):.2f}")
    print(f"ratio: {fed.test_accuracy / base:.4f}")
    print()
    split = "IID" if args.alpha is None else f"Dirichlet alpha={args.alpha}"
    print(f"digits, {args.sites} sites ({split}), {args.rounds} rounds of {args.strategy}, MLP 64-64-10,")
    print("1 local epoch per round, SGD lr 0.1 momentum 0.9 batch 32; sites hold out 10% to validate")
    print(f"federated wall time {fed_seconds:.1f} s, centralized {base_seconds:.1f} s")
    print("round  server_accuracy  site_val_accuracy  train_loss")
    for r in fed.rounds:
        m = r["metrics"]
        print(
            f"{r['round']:5d}  {m['server_accuracy']:15.4f}  {m.get('val_accuracy', float('nan')):17.4f}  "
            f"{m.get('train_loss', float('nan')):10.4f}"
        )


if __name__ == "__main__":
    main()
