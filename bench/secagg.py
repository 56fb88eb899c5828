"""SecAgg+ round cost against plaintext FedAvg of the same updates, in the same run.

Default: 100 clients x 100k parameters, at 0% and 10% dropout (the dropped clients vanish after
sharing their keys and before sending a masked input: the costly case, where the server rebuilds their
mask keys and removes their pairwise masks). Every message goes through its JSON form, as over HTTP.
Reported per setting: server time, mean per-client time and mean bytes sent per client, each as a ratio
against plaintext FedAvg (each client sends its float32 update in the same JSON framing; the server
decodes and averages). With --flower-python pointing at a Python that has flwr, Flower's SecAgg+
(SecAggPlusWorkflow + secaggplus_mod, in-memory grid, protobuf serialization) runs on the same updates
and gets the same ratios.

    .venv/bin/python bench/secagg.py            # full size
    .venv/bin/python bench/secagg.py --quick    # 20 clients x 10k parameters
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict

from bastion.federation.secagg import SecAggConfig
from bastion.federation.secagg.local import LocalRound, Stage
from bastion.federation.secagg.messages import B64Bytes

HERE = Path(__file__).resolve().parent
DEFAULT_FLOWER_PYTHON = str(
    Path(__file__).resolve().parents[1] / ".bench-venv" / "bin" / "python"
)  # make bench-peers


class PlainUpdate(BaseModel):
    """Plaintext FedAvg's upload: the float32 update, in the same JSON framing as SecAgg's messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    round_id: str
    client_id: int
    update: B64Bytes


def updates_for(n: int, d: int, clip: float, seed: int) -> np.ndarray:
    """Same generator as bench/_flower_secaggplus.py, so both see identical updates."""
    return np.random.default_rng(seed).uniform(-clip / 2, clip / 2, size=(n, d)).astype(np.float32)


@dataclass
class Figures:
    server_seconds: float
    client_seconds: float
    bytes_sent: float
    max_error: float


def plain_fedavg(updates: np.ndarray, survivors: list[int]) -> tuple[Figures, np.ndarray]:
    client_seconds, sizes, server = [], [], 0.0
    total = np.zeros(updates.shape[1], dtype=np.float64)
    for c in survivors:
        start = time.perf_counter()
        wire = (
            PlainUpdate(round_id="plain", client_id=c, update=updates[c - 1].tobytes())
            .model_dump_json()
            .encode()
        )
        client_seconds.append(time.perf_counter() - start)
        sizes.append(len(wire))
        start = time.perf_counter()
        msg = PlainUpdate.model_validate_json(wire)
        total += np.frombuffer(msg.update, dtype="<f4")
        server += time.perf_counter() - start
    start = time.perf_counter()
    mean = total / len(survivors)
    server += time.perf_counter() - start
    return Figures(server, float(np.mean(client_seconds)), float(np.mean(sizes)), 0.0), mean


def bastion_secagg(
    updates: np.ndarray, survivors: list[int], k: int, t: int, clip: float, bits: int
) -> tuple[Figures, SecAggConfig]:
    n, d = updates.shape
    config = SecAggConfig(
        round_id="bench-1",
        participants=tuple(range(1, n + 1)),
        threshold=t,
        neighbours=k,
        vector_length=d,
        clip=clip,
        quant_bits=bits,
    )
    identities = {c: Ed25519PrivateKey.generate() for c in config.participants}  # enrolment, not timed
    rnd = LocalRound(config, identities)
    dropped: dict[int, Stage] = {c: "mask" for c in config.participants if c not in survivors}
    as_float = {c: updates[c - 1].astype(np.float64) for c in config.participants}
    result = rnd.run(as_float, drop=dropped)
    assert result.included == tuple(survivors)
    expected = updates[[c - 1 for c in survivors]].astype(np.float64).sum(axis=0)
    err = float(np.max(np.abs(result.total - expected)))
    assert err <= result.max_error + 1e-6, (err, result.max_error)
    stats = rnd.stats
    return (
        Figures(
            stats.server_seconds,
            float(np.mean([stats.client_seconds[c] for c in survivors])),
            float(np.mean([stats.bytes_sent[c] for c in survivors])),
            err / len(survivors),  # as an error on the mean, comparable with Flower's
        ),
        config,
    )


def flower_secaggplus(
    python: str, n: int, d: int, k: int, t: int, dropout: float, clip: float, seed: int
) -> Figures | str:
    if not Path(python).exists():
        return f"no Python with flwr at {python}"
    cmd = [python, str(HERE / "_flower_secaggplus.py"), "--clients", str(n), "--params", str(d)]
    cmd += ["--neighbours", str(k), "--threshold", str(t), "--dropout", str(dropout), "--clip", str(clip)]
    cmd += ["--seed", str(seed)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env, check=False)
    except subprocess.TimeoutExpired:
        return "timed out"
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return "failed: " + (out.stderr.strip().splitlines() or ["no output"])[-1]
    data = json.loads(lines[-1])
    if "skipped" in data:
        return str(data["skipped"])
    return Figures(
        data["server_seconds"],
        data["client_seconds_mean"],
        data["bytes_sent_mean"],
        data["max_abs_error_vs_plain_mean"],
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--params", type=int, default=100_000)
    p.add_argument("--dropouts", default="0,0.1", help="comma-separated dropout rates")
    p.add_argument(
        "--neighbours", type=int, default=31, help="k, odd (SecAgg+); 0 or >= n for k = n (classic SecAgg)"
    )
    p.add_argument("--threshold", type=int, default=None, help="t; default floor(k/2) + 1")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--bits", type=int, default=22, help="quantization bits (Flower's default range is 2**22)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="20 clients x 10k parameters")
    p.add_argument(
        "--flower-python", default=DEFAULT_FLOWER_PYTHON, help="a Python with flwr installed; '' to skip"
    )
    p.add_argument(
        "--require-peers", action="store_true", help="exit 2 unless Flower's SecAgg+ ran as the peer"
    )
    a = p.parse_args()
    if a.quick:
        a.clients, a.params = 20, 10_000
    n, d = a.clients, a.params
    k = n if a.neighbours <= 0 else min(a.neighbours, n)
    t = a.threshold or SecAggConfig.default_threshold(k)

    ratios: list[str] = []
    raw: list[str] = [
        f"setting: {n} clients x {d} params, k={k}, t={t}, {a.bits}-bit quantization, clip={a.clip}"
    ]
    for rate in [float(x) for x in a.dropouts.split(",")]:
        tag = f"dropout={rate:.0%}"
        updates = updates_for(n, d, a.clip, a.seed)
        n_drop = round(rate * n)
        survivors = list(range(n_drop + 1, n + 1))  # clients 1..n_drop drop, as in the Flower driver
        plain, _ = plain_fedavg(updates, survivors)
        ours, _cfg = bastion_secagg(updates, survivors, k, t, a.clip, a.bits)
        for name, fig in (("bastion_secagg", ours),):
            ratios += _ratio_lines(name, tag, fig, plain)
        raw += _raw_lines("plain_fedavg", tag, plain) + _raw_lines("bastion_secagg", tag, ours)
        if a.flower_python:
            flower = flower_secaggplus(a.flower_python, n, d, k, t, rate, a.clip, a.seed)
            if isinstance(flower, Figures):
                ratios += _ratio_lines("flower_secaggplus", tag, flower, plain)
                raw += _raw_lines("flower_secaggplus", tag, flower)
            else:
                raw.append(f"flower_secaggplus[{tag}]: skipped ({flower})")
                if a.require_peers:
                    print(f"flower_secaggplus: {flower} (run `make bench-peers`)", file=sys.stderr)
                    return 2
    print("\n".join(ratios))
    print("--- raw figures (seconds, bytes) ---")
    print("\n".join(raw))
    return 0


def _ratio_lines(name: str, tag: str, fig: Figures, plain: Figures) -> list[str]:
    return [
        f"{name}_server_time_vs_plain[{tag}]: {fig.server_seconds / plain.server_seconds:.2f}",
        f"{name}_client_time_vs_plain[{tag}]: {fig.client_seconds / plain.client_seconds:.2f}",
        f"{name}_client_bytes_vs_plain[{tag}]: {fig.bytes_sent / plain.bytes_sent:.3f}",
    ]


def _raw_lines(name: str, tag: str, fig: Figures) -> list[str]:
    return [
        f"{name}[{tag}]: server {fig.server_seconds:.4f} s, per client {fig.client_seconds:.5f} s, "
        f"{fig.bytes_sent:.0f} bytes sent per client, max error on the mean {fig.max_error:.2e}"
    ]


if __name__ == "__main__":
    sys.exit(main())
