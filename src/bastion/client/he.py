"""Encrypted predictions, client side: the secret key is made, used and kept here only.

Flow: fetch the model's encryption spec (input layout, CKKS parameters, link function), create a
TenSEAL context with those parameters, encrypt the rows column by column (slot i of each column's
ciphertext belongs to row i, up to ``slots`` rows per group), send the ciphertexts with the context
made public (relinearisation keys only: no secret key, no Galois keys, as no rotation is needed),
decrypt the returned scores and apply the link (sigmoid, softmax or identity) locally.
Imports tenseal lazily; never imports server modules.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class EncryptionInputError(ValueError):
    """A row the client cannot encrypt (missing or non-numeric value): raised before anything is sent."""


def encode_rows(inputs: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Rows keyed by feature name as the model's encrypted input layout (numbers and 0/1 indicators)."""
    out = np.zeros((len(rows), len(inputs)), dtype=np.float64)
    for r, row in enumerate(rows):
        for c, spec in enumerate(inputs):
            feature = spec["feature"]
            if feature not in row or row[feature] is None:
                raise EncryptionInputError(
                    f"row {r} lacks {feature!r}: encrypted inference needs complete rows "
                    "(the server cannot impute what it cannot see)"
                )
            value = row[feature]
            category = spec.get("category")
            if category is not None:
                out[r, c] = 1.0 if str(value) == category else 0.0
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise EncryptionInputError(f"row {r}: {feature!r} must be a number") from None
            if not math.isfinite(number):
                raise EncryptionInputError(f"row {r}: {feature!r} must be finite")
            out[r, c] = number
    return out


@dataclass
class EncryptedBatch:
    """What goes to the server (``request``) and the context that decrypts what comes back."""

    context: Any
    request: dict[str, Any]
    bytes_sent: int


def make_context(spec: Mapping[str, Any]) -> Any:
    import tenseal as ts

    params = spec["parameters"]
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=int(params["poly_modulus_degree"]),
        coeff_mod_bit_sizes=[int(b) for b in params["coeff_mod_bit_sizes"]],
    )
    ctx.global_scale = 2.0 ** int(params["global_scale_bits"])
    return ctx


def public_context_bytes(ctx: Any, relin_keys: bool) -> bytes:
    """The context as sent: never the secret key; relinearisation keys only when the model squares."""
    data: bytes = ctx.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=relin_keys
    )
    return data


def encrypt(spec: Mapping[str, Any], matrix: np.ndarray, *, version: int | None = None) -> EncryptedBatch:
    import tenseal as ts

    ctx = make_context(spec)
    slots = int(spec["parameters"]["slots"])
    context_bytes = public_context_bytes(ctx, bool(spec.get("needs_relin_keys")))
    groups = []
    sent = len(context_bytes)
    for start in range(0, len(matrix), slots):
        chunk = matrix[start : start + slots]
        columns = []
        for j in range(chunk.shape[1]):
            blob = ts.ckks_vector(ctx, chunk[:, j].tolist()).serialize()
            sent += len(blob)
            columns.append(base64.b64encode(blob).decode("ascii"))
        groups.append({"n_rows": len(chunk), "columns": columns})
    request = {
        "version": version,
        "context": base64.b64encode(context_bytes).decode("ascii"),
        "groups": groups,
    }
    return EncryptedBatch(ctx, request, sent)


def decrypt_scores(ctx: Any, response: Mapping[str, Any]) -> np.ndarray:
    """The decrypted scores, one row per input row and one column per model output."""
    import tenseal as ts

    blocks = []
    for group in response["groups"]:
        cols = [
            np.asarray(ts.ckks_vector_from(ctx, base64.b64decode(b)).decrypt(), dtype=np.float64)
            for b in group["ciphertexts"]
        ]
        blocks.append(np.stack(cols, axis=1))
    return np.vstack(blocks)


def apply_link(scores: np.ndarray, link: str, classes: list[str] | None) -> dict[str, Any]:
    """Predictions (and probabilities for classifiers) from decrypted scores, as the plaintext API gives."""
    if link == "identity":
        return {"predictions": scores[:, 0].tolist()}
    if classes is None:
        raise ValueError("a classifier's spec must list its classes")
    if link == "logistic":
        p1 = 1.0 / (1.0 + np.exp(-np.clip(scores[:, 0], -500, 500)))
        proba = np.stack([1.0 - p1, p1], axis=1)
    else:
        shifted = scores - scores.max(axis=1, keepdims=True)
        expd = np.exp(shifted)
        proba = expd / expd.sum(axis=1, keepdims=True)
    labels = [classes[i] for i in proba.argmax(axis=1)]
    return {"predictions": labels, "classes": list(classes), "probabilities": proba.round(6).tolist()}
