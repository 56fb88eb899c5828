"""Evaluating a circuit on a client's CKKS ciphertexts: the trust boundary of encrypted inference.

A request carries a serialized TenSEAL context (public parts only) and, per packed group of rows,
one ciphertext per input column ("column packing": slot i of every ciphertext in a group belongs to
row i, so affine layers need only plaintext multiplications and additions, no rotations and hence
no Galois keys). Checks, in this order, each failing with its own error code before any work that
depends on it:

1. sizes, before any deserialization: context bytes, each ciphertext's bytes, their total, the
   number of groups, columns per group, rows per group and in total, and the operation count;
2. the context parses, carries **no secret key** (refused and dropped if it does), and its
   parameters meet 128-bit security, a sane scale and the circuit's depth;
3. relinearisation keys are present when the circuit squares;
4. every ciphertext parses under that context (SEAL checks it belongs to these parameters) and
   holds exactly the rows announced;
5. evaluation under a deadline checked between ciphertext operations (each a few milliseconds).

Nothing here stores, logs or returns anything but the output ciphertexts: the context and its
evaluation keys live in local variables for the duration of the call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bastion.errors import Invalid, PayloadTooLarge, Unavailable
from bastion.ml.he.circuit import Affine, Circuit
from bastion.ml.he.params import check_context, inspect_context

# The smallest magnitude a plaintext weight is multiplied by: SEAL refuses a product with an all-zero
# plaintext (a "transparent" ciphertext), so an exact zero weight is skipped, and an output whose
# weights are all zero uses this one instead (an error far below CKKS noise).
_TINY = 1e-12


@dataclass(frozen=True)
class Limits:
    max_context_bytes: int = 8 * 1024 * 1024
    max_ciphertext_bytes: int = 4 * 1024 * 1024
    max_total_bytes: int = 48 * 1024 * 1024
    max_rows: int = 65_536
    max_groups: int = 16
    max_ops: int = 200_000
    time_budget_seconds: float = 20.0


@dataclass(frozen=True)
class Group:
    n_rows: int
    columns: list[bytes]


@dataclass(frozen=True)
class Result:
    outputs: list[list[bytes]]  # per group, one ciphertext per output
    rows: int
    bytes_in: int
    bytes_out: int
    seconds: float


def check_sizes(circuit: Circuit, context: bytes, groups: list[Group], limits: Limits) -> int:
    """Step 1; returns the total bytes received."""
    if len(context) > limits.max_context_bytes:
        raise PayloadTooLarge(
            f"the context is {len(context)} bytes, above the limit of {limits.max_context_bytes} "
            "(send relinearisation keys only: no Galois keys, no public or secret key)",
            code="he_context_too_large",
        )
    if not groups:
        raise Invalid("no ciphertexts sent", code="he_bad_request")
    if len(groups) > limits.max_groups:
        raise PayloadTooLarge(
            f"{len(groups)} groups of rows, above the limit of {limits.max_groups}", code="he_too_many_rows"
        )
    total, rows = len(context), 0
    for g, group in enumerate(groups):
        if len(group.columns) != circuit.n_inputs:
            raise Invalid(
                f"group {g} has {len(group.columns)} ciphertexts; the model takes {circuit.n_inputs} "
                "input columns (one ciphertext per column)",
                code="he_bad_request",
            )
        if group.n_rows < 1:
            raise Invalid(f"group {g} announces no rows", code="he_bad_request")
        rows += group.n_rows
        for c, blob in enumerate(group.columns):
            if len(blob) > limits.max_ciphertext_bytes:
                raise PayloadTooLarge(
                    f"ciphertext {c} of group {g} is {len(blob)} bytes, above the limit of "
                    f"{limits.max_ciphertext_bytes}",
                    code="he_ciphertext_too_large",
                )
            total += len(blob)
    if total > limits.max_total_bytes:
        raise PayloadTooLarge(
            f"{total} bytes of context and ciphertexts, above the limit of {limits.max_total_bytes}",
            code="he_request_too_large",
        )
    if rows > limits.max_rows:
        raise PayloadTooLarge(f"{rows} rows, above the limit of {limits.max_rows}", code="he_too_many_rows")
    if circuit.ops() * len(groups) > limits.max_ops:
        raise PayloadTooLarge(
            f"this request needs {circuit.ops() * len(groups)} ciphertext operations, above the limit "
            f"of {limits.max_ops}; send fewer groups",
            code="he_request_too_expensive",
        )
    return total


def load_context(context: bytes, circuit: Circuit) -> Any:
    """Steps 2 and 3: a public context deep enough for ``circuit``."""
    import tenseal as ts

    try:
        ctx = ts.context_from(context)
    except Exception:
        raise Invalid("the context is not a serialized TenSEAL context", code="he_bad_context") from None
    if ctx.is_private() or ctx.has_secret_key():
        del ctx
        raise Invalid(
            "the context carries a secret key: refused and discarded unused. Treat that key as "
            "exposed; create a new one and send the context with make_context_public() applied",
            code="he_secret_key_sent",
        )
    try:
        facts = inspect_context(ctx)
    except Exception:
        raise Invalid("the context is not a CKKS context", code="he_bad_context") from None
    check_context(facts, circuit.depth)
    if circuit.needs_relin_keys and not ctx.has_relin_keys():
        raise Invalid(
            "this model squares ciphertexts: the context must carry relinearisation keys",
            code="he_missing_keys",
        )
    return ctx


def _load_vectors(ctx: Any, groups: list[Group], slots: int) -> list[list[Any]]:
    """Step 4."""
    import tenseal as ts

    loaded: list[list[Any]] = []
    for g, group in enumerate(groups):
        if group.n_rows > slots:
            raise Invalid(
                f"group {g} announces {group.n_rows} rows; a ciphertext holds at most {slots}",
                code="he_bad_request",
            )
        vectors = []
        for c, blob in enumerate(group.columns):
            try:
                vec = ts.ckks_vector_from(ctx, blob)
            except Exception:
                raise Invalid(
                    f"ciphertext {c} of group {g} is truncated, corrupt, or was not made under the "
                    "parameters of the context sent with it",
                    code="he_bad_ciphertext",
                ) from None
            if vec.size() != group.n_rows:
                raise Invalid(
                    f"ciphertext {c} of group {g} holds {vec.size()} rows, not {group.n_rows}",
                    code="he_bad_ciphertext",
                )
            vectors.append(vec)
        loaded.append(vectors)
    return loaded


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise Unavailable(
                f"the encrypted evaluation ran past its time budget of {self.seconds:g} s; "
                "send fewer rows or retry when the server is less busy",
                code="he_time_budget_exceeded",
            )


def _affine(xs: list[Any], step: Affine, deadline: _Deadline) -> list[Any]:
    out = []
    for k in range(step.weight.shape[0]):
        acc = None
        for j, x in enumerate(xs):
            w = float(step.weight[k, j])
            if w == 0.0:
                continue
            term = x * w
            acc = term if acc is None else acc + term
            deadline.check()
        if acc is None:
            acc = xs[0] * _TINY
        out.append(acc + float(step.bias[k]))
    return out


def run_circuit(circuit: Circuit, xs: list[Any], deadline: _Deadline) -> list[Any]:
    """The circuit on one group's column ciphertexts; returns one ciphertext per output."""
    for step in circuit.steps:
        if isinstance(step, Affine):
            xs = _affine(xs, step, deadline)
            continue
        squared = []
        for x in xs:
            y = x * x
            if step.linear != 0.0:
                y = y + x * step.linear
            if step.constant != 0.0:
                y = y + step.constant
            squared.append(y)
            deadline.check()
        xs = squared
    return xs


def evaluate(circuit: Circuit, context: bytes, groups: list[Group], limits: Limits) -> Result:
    started = time.perf_counter()
    bytes_in = check_sizes(circuit, context, groups, limits)
    deadline = _Deadline(limits.time_budget_seconds)
    ctx = load_context(context, circuit)
    slots = inspect_context(ctx).poly_modulus_degree // 2
    vectors = _load_vectors(ctx, groups, slots)
    outputs: list[list[bytes]] = []
    for xs in vectors:
        deadline.check()
        outputs.append([y.serialize() for y in run_circuit(circuit, xs, deadline)])
    return Result(
        outputs=outputs,
        rows=sum(g.n_rows for g in groups),
        bytes_in=bytes_in,
        bytes_out=sum(len(b) for group in outputs for b in group),
        seconds=time.perf_counter() - started,
    )
