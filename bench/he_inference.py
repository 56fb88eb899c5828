"""Encrypted (CKKS) predictions against plaintext predictions of the same models, in the same run.

Models: logistic regression and an ``he_mlp`` (1 hidden layer of 16, poly activation) trained on
``breast_cancer``. For batch sizes 1 and 4,096 rows (rows sampled from the dataset, packed in slots
column by column) it measures, fastest of ``--repeat`` turns:

* plaintext: ``Predictor.predict_proba`` on the rows (what ``POST /models/{id}/predict`` runs);
* client: encode + encrypt, and decrypt + link;
* server: :func:`bastion.ml.he.evaluate.evaluate` (size checks, context and ciphertext parsing,
  the circuit, output serialization), i.e. the server time of ``POST /models/{id}/predict/encrypted``
  without HTTP;
* bytes sent per row (context + ciphertexts) and received.

Prints ``name: ratio`` lines (server time / plaintext time) first, then raw figures.

Usage::

    .venv/bin/python bench/he_inference.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bastion.client import he
from bastion.data.builtin import load_dataset
from bastion.ml.he.circuit import compile_model
from bastion.ml.he.evaluate import Group, Limits, evaluate
from bastion.ml.he.params import params_for_depth
from bastion.ml.serialize import load_model
from bastion.ml.train import train


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def measure(name: str, predictor: Any, rows: list[dict[str, float]], repeat: int) -> dict[str, Any]:
    circuit = compile_model(predictor)
    spec = {
        "parameters": params_for_depth(circuit.depth).to_json(),
        "needs_relin_keys": circuit.needs_relin_keys,
    }
    plain_s, _ = _best(lambda: predictor.predict_proba(rows), repeat)
    enc_s, batch = _best(lambda: he.encrypt(spec, he.encode_rows(circuit.inputs, rows)), repeat)
    context = base64.b64decode(batch.request["context"])
    groups = [
        Group(g["n_rows"], [base64.b64decode(c) for c in g["columns"]]) for g in batch.request["groups"]
    ]
    server_s, result = _best(lambda: evaluate(circuit, context, groups, Limits(max_groups=64)), repeat)
    response = {
        "groups": [{"ciphertexts": [base64.b64encode(b).decode() for b in out]} for out in result.outputs]
    }
    dec_s, scores = _best(lambda: he.decrypt_scores(batch.context, response), repeat)
    link_s, out = _best(lambda: he.apply_link(scores, circuit.link, circuit.classes), repeat)
    agree = float(np.mean(np.asarray(out["predictions"]) == predictor.predict(rows)))
    proba_err = float(np.abs(np.asarray(out["probabilities"]) - predictor.predict_proba(rows)).max())
    return {
        "name": name,
        "rows": len(rows),
        "depth": circuit.depth,
        "N": spec["parameters"]["poly_modulus_degree"],
        "plaintext_s": plain_s,
        "client_encrypt_s": enc_s,
        "server_s": server_s,
        "client_decrypt_s": dec_s + link_s,
        "bytes_sent_per_row": batch.bytes_sent / len(rows),
        "context_bytes": len(context),
        "bytes_received_per_row": result.bytes_out / len(rows),
        "rows_per_server_second": len(rows) / server_s,
        "same_class": agree,
        "max_probability_error": proba_err,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset("breast_cancer")
    models = {
        "logistic": train(
            "alzheimer_classifier", data, {"estimator": "logistic_regression", "importance_repeats": 0}
        ),
        "he_mlp": train("he_mlp", data, {"hidden_layers": [16], "epochs": 40, "importance_repeats": 0}),
    }
    rng = np.random.default_rng(0)
    results = []
    for name, result in models.items():
        predictor = load_model(result.model_bytes, result.model_format, result.model_config)
        for n in (1, 4096):
            X = data.X[rng.integers(0, len(data.X), size=n)]
            rows = [dict(zip(data.feature_names, map(float, x), strict=True)) for x in X]
            results.append(measure(name, predictor, rows, args.repeat))
    for r in results:
        print(f"he_{r['name']}_{r['rows']}_server_vs_plaintext: {r['server_s'] / r['plaintext_s']:.1f}")
    print()
    for r in results:
        print(
            f"{r['name']:8s} rows={r['rows']:5d} N={r['N']} depth={r['depth']} "
            f"plaintext={r['plaintext_s'] * 1e3:.2f} ms  server={r['server_s'] * 1e3:.1f} ms "
            f"({r['rows_per_server_second']:.0f} rows/s)  client encrypt={r['client_encrypt_s'] * 1e3:.0f} ms "
            f"decrypt={r['client_decrypt_s'] * 1e3:.0f} ms  sent={r['bytes_sent_per_row'] / 1024:.1f} KiB/row "
            f"(context {r['context_bytes'] / 1024:.0f} KiB)  received={r['bytes_received_per_row'] / 1024:.2f} "
            f"KiB/row  same class={r['same_class']:.4f}  max |dp|={r['max_probability_error']:.1e}"
        )


if __name__ == "__main__":
    main()
