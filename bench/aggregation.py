"""Streaming FedAvg (Bastion) against Flower's ``aggregate_inplace``, same updates, same run.

Each side runs in its own fresh subprocess so that its peak memory (ru_maxrss above the post-import
baseline) is its own. Both start from the bytes a server holds once an update has arrived: Flower's
``Parameters`` (``np.save`` per tensor) and Bastion's decrypted safetensors payload. Flower needs the
whole list of results before it can aggregate; Bastion folds each update as it arrives, so its
updates are generated one at a time (generation and encoding are excluded from both timings).

Usage::

    .venv/bin/python bench/aggregation.py            # issue sizes: 100 x 1M and 1000 x 100k
    .venv/bin/python bench/aggregation.py --quick    # 20 x 200k and 100 x 20k

Flower runs under ``--flower-python`` (default ``.bench-venv/bin/python``, which ``make bench-peers``
builds); if flwr cannot be imported there, a faithful copy of ``aggregate_inplace`` (flwr 1.x,
flwr/server/strategy/aggregate.py) is used and the output says so, and ``--require-peers`` makes that
an error (exit 2).

The memory-speed baseline (``aggregation_vs_memory_read``) is measured in the Bastion worker on the
same decoded updates: one NumPy ``sum`` over each update, i.e. reading every byte of every update
once, which is what a fold at memory speed costs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial, reduce
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
FLOWER_PYTHON = str(Path(__file__).resolve().parents[1] / ".bench-venv" / "bin" / "python")
SIZES = [(100, 1_000_000), (1000, 100_000)]
QUICK_SIZES = [(20, 200_000), (100, 20_000)]


def layer_shapes(num_params: int) -> list[tuple[int, ...]]:
    """An MLP-like split of ``num_params`` into 4 tensors (two weight matrices, two biases)."""
    hidden = 256
    first = (num_params * 3 // 4) // hidden
    rest = num_params - first * hidden - hidden - 10
    return [(hidden, first), (hidden,), (rest // 10, 10), (10 + rest % 10,)]


def client_update(seed: int, shapes: list[tuple[int, ...]]) -> tuple[list[np.ndarray], int]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    return arrays, int(rng.integers(50, 5000))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def summary(params: list[np.ndarray]) -> dict[str, Any]:
    flat = np.concatenate([p.reshape(-1) for p in params]).astype(np.float64)
    return {"sum": float(flat.sum()), "head": flat[:64].tolist()}


# -- Bastion side ---------------------------------------------------------------------------------
def run_bastion(clients: int, num_params: int, accumulator: str, repeat: int) -> dict[str, Any]:
    sys.path.insert(0, str(SRC))
    from bastion.federation import strategies
    from bastion.federation.tensors import decode, encode

    shapes = layer_shapes(num_params)
    names = [f"layer{i}" for i in range(len(shapes))]
    strategy = strategies.create_strategy("fedavg", {"accumulator": accumulator})
    glob = {n: np.zeros(s, np.float32) for n, s in zip(names, shapes, strict=True)}
    from bastion.federation.strategies.kernels import backend, fold_into

    warm = np.zeros(8)
    fold_into(warm, np.ones(8, np.float32), 1.0)  # compile (or load) the kernel outside the timing
    base = current_rss_mib()
    times, reads = [], []
    for rnd in range(repeat):
        strategy.begin_round(glob, rnd)
        elapsed = read = 0.0
        for c in range(clients):
            arrays, n = client_update(c, shapes)
            payload = encode(dict(zip(names, arrays, strict=True)))  # what arrives, once decrypted
            del arrays
            t0 = time.perf_counter()
            for arr in decode(payload).values():  # the memory-speed baseline: read every byte once
                arr.sum()
            t1 = time.perf_counter()
            strategy.accumulate(decode(payload), n)
            elapsed += time.perf_counter() - t1
            read += t1 - t0
            del payload
        t0 = time.perf_counter()
        result = strategy.finalize()
        times.append(elapsed + time.perf_counter() - t0)
        reads.append(read)
    return {
        "seconds": min(times),
        "read_seconds": min(reads),
        "backend": backend(),
        "peak_mib": rss_mib() - base,
        **summary([result[n] for n in names]),
    }


# -- Flower side ----------------------------------------------------------------------------------
def _bytes_to_ndarray(tensor: bytes) -> np.ndarray:
    return np.load(BytesIO(tensor), allow_pickle=False)  # flwr.common.parameter.bytes_to_ndarray


def _ndarray_to_bytes(arr: np.ndarray) -> bytes:
    buf = BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def aggregate_inplace_copy(results: list[tuple[Any, Any]]) -> list[np.ndarray]:
    """Verbatim logic of flwr.server.strategy.aggregate.aggregate_inplace (flwr 1.x)."""
    num_examples_total = sum(fit_res.num_examples for (_, fit_res) in results)
    scaling_factors = np.asarray([fit_res.num_examples / num_examples_total for _, fit_res in results])

    def _try_inplace(x: np.ndarray, y: Any, np_binary_op: np.ufunc) -> np.ndarray:
        return (
            np_binary_op(x, y, out=x)
            if np.can_cast(y, x.dtype, casting="same_kind")
            else np_binary_op(x, np.array(y, x.dtype), out=x)
        )

    params = [
        _try_inplace(x, scaling_factors[0], np_binary_op=np.multiply)
        for x in [_bytes_to_ndarray(t) for t in results[0][1].parameters.tensors]
    ]
    for i, (_, fit_res) in enumerate(results[1:], start=1):
        res = (
            _try_inplace(x, scaling_factors[i], np_binary_op=np.multiply)
            for x in [_bytes_to_ndarray(t) for t in fit_res.parameters.tensors]
        )
        params = [
            reduce(partial(_try_inplace, np_binary_op=np.add), layer_updates)
            for layer_updates in zip(params, res, strict=True)
        ]
    return params


def run_flower(clients: int, num_params: int, repeat: int) -> dict[str, Any]:
    aggregate: Callable[[list[tuple[Any, Any]]], list[np.ndarray]]
    try:
        import flwr
        from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
        from flwr.server.strategy.aggregate import aggregate_inplace

        source = f"flwr {flwr.__version__}"

        def make(arrays: list[np.ndarray], n: int) -> Any:
            return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, {})

        aggregate = aggregate_inplace
    except ImportError:
        from types import SimpleNamespace

        source = "faithful copy of flwr aggregate_inplace (flwr not importable)"

        def make(arrays: list[np.ndarray], n: int) -> Any:
            params = SimpleNamespace(
                tensors=[_ndarray_to_bytes(a) for a in arrays], tensor_type="numpy.ndarray"
            )
            return SimpleNamespace(parameters=params, num_examples=n)

        aggregate = aggregate_inplace_copy

    shapes = layer_shapes(num_params)
    base = current_rss_mib()
    results = []
    for c in range(clients):  # Flower's server holds every result before aggregating
        arrays, n = client_update(c, shapes)
        results.append((None, make(arrays, n)))
        del arrays
    times = []
    for _ in range(repeat):  # aggregate_inplace re-reads the bytes, so the results can be reused
        t0 = time.perf_counter()
        out = aggregate(results)
        times.append(time.perf_counter() - t0)
        if len(times) < repeat:
            del out
    return {"seconds": min(times), "peak_mib": rss_mib() - base, "source": source, **summary(out)}


# -- precision of the FedAvg accumulator -----------------------------------------------------------
def precision_study(clients: int, num_params: int) -> list[str]:
    """float64 vs float32 vs Kahan-float32 running sums: time per client and error vs float64 exact."""
    sys.path.insert(0, str(SRC))
    from bastion.federation.strategies.fedavg import CHUNK, WeightedSum

    rng = np.random.default_rng(0)
    updates = [rng.standard_normal(num_params, dtype=np.float32) + 3.0 for _ in range(min(clients, 50))]
    weights = [float(rng.integers(50, 5000)) for _ in updates]
    exact = np.zeros(num_params, np.float64)
    for u, w in zip(updates, weights, strict=True):
        exact += w * u.astype(np.float64)
    exact /= sum(weights)

    def kahan() -> np.ndarray:
        acc, comp = np.zeros(num_params, np.float32), np.zeros(num_params, np.float32)
        y, t = np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32)
        for u, w in zip(updates, weights, strict=True):
            for i in range(0, num_params, CHUNK):
                j = min(i + CHUNK, num_params)
                yy, tt, a, c = y[: j - i], t[: j - i], acc[i:j], comp[i:j]
                np.multiply(u[i:j], np.float32(w), out=yy)
                yy -= c
                np.add(a, yy, out=tt)
                np.subtract(tt, a, out=c)
                c -= yy
                a[...] = tt
        return (acc / np.float32(sum(weights))).astype(np.float32)

    def plain(dtype: str) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            acc = WeightedSum({"w": (num_params,)}, dtype)
            for u, w in zip(updates, weights, strict=True):
                acc.add({"w": u}, w)
            return acc.mean()["w"]

        return run

    lines = []
    for label, fn in [("float64", plain("float64")), ("float32", plain("float32")), ("kahan_float32", kahan)]:
        fn()
        best = min(_timed(fn) for _ in range(3))
        err = float(np.abs(fn().astype(np.float64) - exact).max() / np.abs(exact).max())
        lines.append(
            f"  accumulator {label:>13}: {1e3 * best / len(updates):7.3f} ms/client, max rel. error {err:.2e}"
        )
    return lines


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _worker(
    python: str, side: str, clients: int, num_params: int, args: argparse.Namespace
) -> dict[str, Any]:
    cmd = [python, __file__, "--worker", side, "--clients", str(clients), "--params", str(num_params)]
    cmd += ["--accumulator", args.accumulator, "--repeat", str(args.repeat)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _alternating(
    args: argparse.Namespace, clients: int, num_params: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the two sides in turn ``--trials`` times; keep each side's fastest (the machine may be shared)."""
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.trials):
        for side, python in (("flower", args.flower_python), ("bastion", sys.executable)):
            got = _worker(python, side, clients, num_params, args)
            if side not in best or got["seconds"] < best[side]["seconds"]:
                best[side] = {**got, "peak_mib": max(got["peak_mib"], best.get(side, got)["peak_mib"])}
    return best["flower"], best["bastion"]


def _has_flwr(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import flwr"], capture_output=True, check=False)
    return probe.returncode == 0


def _sizes(args: argparse.Namespace) -> Iterator[tuple[int, int]]:
    if args.clients and args.params:
        yield args.clients, args.params
    else:
        yield from QUICK_SIZES if args.quick else SIZES


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a fast check")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--params", type=int)
    parser.add_argument("--accumulator", default="float64", choices=["float64", "float32"])
    parser.add_argument(
        "--flower-python", default=FLOWER_PYTHON if Path(FLOWER_PYTHON).exists() else sys.executable
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds per worker; the fastest is reported")
    parser.add_argument(
        "--trials", type=int, default=2, help="fresh worker processes per side, taken in turn"
    )
    parser.add_argument(
        "--require-peers", action="store_true", help="fail (exit 2) unless real flwr runs the baseline"
    )
    parser.add_argument("--worker", choices=["bastion", "flower"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "bastion":
        print(json.dumps(run_bastion(args.clients, args.params, args.accumulator, args.repeat)))
        return
    if args.worker == "flower":
        print(json.dumps(run_flower(args.clients, args.params, args.repeat)))
        return

    rows = []
    if args.require_peers and not _has_flwr(args.flower_python):
        print(f"peer missing: flwr is not importable by {args.flower_python} (run `make bench-peers`)")
        sys.exit(2)
    for clients, num_params in _sizes(args):
        flower, bastion = _alternating(args, clients, num_params)
        diff = max(abs(a - b) for a, b in zip(flower["head"], bastion["head"], strict=True))
        rows.append((clients, num_params, flower, bastion, diff))

    for clients, num_params, flower, bastion, _ in rows:
        label = f"{clients}x{num_params // 1000}k"
        print(f"aggregation_speedup_vs_flower[{label}]: {flower['seconds'] / bastion['seconds']:.2f}")
        print(f"aggregation_vs_memory_read[{label}]: {bastion['seconds'] / bastion['read_seconds']:.2f}")
        print(
            f"aggregation_peak_memory_ratio_flower_over_bastion[{label}]: "
            f"{flower['peak_mib'] / max(bastion['peak_mib'], 1e-9):.1f}"
        )
    print()
    print(
        f"baseline: {rows[0][2]['source']}; Bastion accumulator: {args.accumulator}, "
        f"fold: {rows[0][3]['backend']}"
    )
    for clients, num_params, flower, bastion, diff in rows:
        print(f"{clients} clients x {num_params:,} float32 parameters:")
        print(
            f"  flower  aggregate_inplace: {flower['seconds']:8.3f} s   peak +{flower['peak_mib']:8.1f} MiB"
        )
        print(
            f"  bastion streaming fedavg : {bastion['seconds']:8.3f} s   peak +{bastion['peak_mib']:8.1f} MiB"
        )
        print(
            f"  read every update once   : {bastion['read_seconds']:8.3f} s   "
            f"({clients * num_params * 4 / bastion['read_seconds'] / 1e9:.1f} GB/s)"
        )
        print(f"  max |difference| of results (first 64 values): {diff:.2e}")
    clients, num_params = next(iter(_sizes(args)))
    print(f"FedAvg accumulator study ({min(clients, 50)} clients x {num_params:,}):")
    for line in precision_study(clients, num_params):
        print(line)


if __name__ == "__main__":
    main()
