"""The trust boundary of encrypted inference: every bad request is refused with its own code."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from bastion.client import he
from bastion.errors import BastionError
from bastion.ml.he.circuit import Circuit, compile_model
from bastion.ml.he.evaluate import Group, Limits, evaluate
from bastion.ml.he.params import params_for_depth
from tests.ml.he.conftest import loaded


def _spec(circuit: Circuit, depth: int | None = None) -> dict[str, Any]:
    return {
        "parameters": params_for_depth(depth or circuit.depth).to_json(),
        "needs_relin_keys": circuit.needs_relin_keys,
    }


def _request(batch: he.EncryptedBatch) -> tuple[bytes, list[Group]]:
    groups = [
        Group(g["n_rows"], [base64.b64decode(c) for c in g["columns"]]) for g in batch.request["groups"]
    ]
    return base64.b64decode(batch.request["context"]), groups


def _refused(circuit: Circuit, context: bytes, groups: list[Group], code: str, **limits: Any) -> str:
    with pytest.raises(BastionError) as exc:
        evaluate(circuit, context, groups, Limits(**limits))
    assert exc.value.code == code, exc.value.message
    return exc.value.message


@pytest.fixture(scope="module")
def setup(cancer: Any, logistic: Any, poly_mlp: Any) -> dict[str, Any]:
    lin, mlp = compile_model(loaded(logistic)), compile_model(loaded(poly_mlp))
    rows = [dict(zip(cancer.feature_names, map(float, x), strict=True)) for x in cancer.X[:64]]
    return {"lin": lin, "mlp": mlp, "X": he.encode_rows(lin.inputs, rows)}


def test_round_trip_matches_plaintext_and_keeps_the_secret_key_home(setup: dict[str, Any]) -> None:
    lin, X = setup["lin"], setup["X"]
    batch = he.encrypt(_spec(lin), X)
    context, groups = _request(batch)
    result = evaluate(lin, context, groups, Limits())
    scores = he.decrypt_scores(
        batch.context,
        {"groups": [{"ciphertexts": [base64.b64encode(b).decode() for b in out]} for out in result.outputs]},
    )
    assert np.abs(scores - lin.plaintext(X)).max() < 1e-3
    import tenseal as ts

    assert not ts.context_from(context).is_private()


def test_ciphertexts_from_another_context_are_refused(setup: dict[str, Any]) -> None:
    lin, X = setup["lin"], setup["X"]
    context, _ = _request(he.encrypt(_spec(lin), X))
    _, foreign = _request(he.encrypt(_spec(lin, depth=3), X))  # other parameters (N = 16384)
    _refused(lin, context, foreign, "he_bad_ciphertext")


def test_truncated_and_oversized_ciphertexts_are_refused(setup: dict[str, Any]) -> None:
    lin, X = setup["lin"], setup["X"]
    context, groups = _request(he.encrypt(_spec(lin), X))
    cut = [Group(groups[0].n_rows, [c[: len(c) // 2] for c in groups[0].columns])]
    _refused(lin, context, cut, "he_bad_ciphertext")
    size = len(groups[0].columns[0])
    _refused(lin, context, groups, "he_ciphertext_too_large", max_ciphertext_bytes=size - 1)
    _refused(lin, context, groups, "he_context_too_large", max_context_bytes=len(context) - 1)
    _refused(lin, context, groups, "he_request_too_large", max_total_bytes=size * 3)
    wrong_rows = [Group(groups[0].n_rows + 1, groups[0].columns)]
    _refused(lin, context, wrong_rows, "he_bad_ciphertext")
    _refused(lin, context, [Group(1, groups[0].columns[:-1])], "he_bad_request")
    _refused(lin, b"not a context", groups, "he_bad_context")


def test_missing_keys_secret_keys_and_shallow_contexts_are_refused(setup: dict[str, Any]) -> None:
    mlp, lin, X = setup["mlp"], setup["lin"], setup["X"]
    batch = he.encrypt(_spec(mlp), X)
    _, groups = _request(batch)
    no_relin = he.public_context_bytes(batch.context, relin_keys=False)
    assert "relinearisation" in _refused(mlp, no_relin, groups, "he_missing_keys")
    secret = batch.context.serialize(save_secret_key=True)
    _refused(mlp, secret, groups, "he_secret_key_sent")
    shallow, shallow_groups = _request(he.encrypt(_spec(lin), X))  # depth 1 context, depth 3 model
    assert "too deep" in _refused(mlp, shallow, shallow_groups, "he_model_too_deep")


def test_time_and_work_budgets(setup: dict[str, Any]) -> None:
    lin, X = setup["lin"], setup["X"]
    context, groups = _request(he.encrypt(_spec(lin), X))
    _refused(lin, context, groups, "he_time_budget_exceeded", time_budget_seconds=1e-9)
    _refused(lin, context, groups, "he_request_too_expensive", max_ops=lin.ops() - 1)
    _refused(lin, context, groups, "he_too_many_rows", max_rows=len(X) - 1)


def test_poly_mlp_round_trip(setup: dict[str, Any]) -> None:
    mlp, X = setup["mlp"], setup["X"]
    batch = he.encrypt(_spec(mlp), X)
    context, groups = _request(batch)
    result = evaluate(mlp, context, groups, Limits())
    scores = he.decrypt_scores(
        batch.context,
        {"groups": [{"ciphertexts": [base64.b64encode(b).decode() for b in out]} for out in result.outputs]},
    )
    assert np.abs(scores - mlp.plaintext(X)).max() < 1e-3
