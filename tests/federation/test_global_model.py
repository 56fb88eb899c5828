"""The server-signed global model: sites accept only the coordinator's weights for the right round."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bastion.crypto import signing
from bastion.errors import BadRequest, CryptoError, Invalid
from bastion.federation.global_model import GlobalModel, sign_global_model, verify_global_model

CONFIG = {"model": {"type": "tabular_mlp", "in_features": 4, "num_classes": 3}, "local_epochs": 2}


@pytest.fixture
def key() -> signing.Ed25519PrivateKey:
    return signing.generate_signing_key()


@pytest.fixture
def weights() -> dict[str, np.ndarray]:
    return {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, np.float32)}


def test_sign_serialise_verify(key: signing.Ed25519PrivateKey, weights: dict[str, np.ndarray]) -> None:
    model = sign_global_model(key, federation_id="f1", round=4, weights=weights, config=CONFIG)
    again = GlobalModel.from_bytes(model.to_bytes())
    assert again == model
    out = verify_global_model(key.public_key(), again, federation_id="f1", round=4)
    np.testing.assert_array_equal(out["w"], weights["w"])
    assert dict(again.config) == CONFIG


def test_tampered_weights_config_or_round_fail(
    key: signing.Ed25519PrivateKey, weights: dict[str, np.ndarray]
) -> None:
    model = sign_global_model(key, federation_id="f1", round=4, weights=weights, config=CONFIG)
    blob = bytearray(model.weights)
    blob[-1] ^= 1
    for forged in (
        dataclasses.replace(model, weights=bytes(blob)),
        dataclasses.replace(model, config={**CONFIG, "local_epochs": 50}),
        dataclasses.replace(model, round=5),
        dataclasses.replace(model, federation_id="f2"),
    ):
        with pytest.raises(CryptoError, match="not the server's"):
            verify_global_model(key.public_key(), forged, federation_id=forged.federation_id)


def test_other_key_fails(key: signing.Ed25519PrivateKey, weights: dict[str, np.ndarray]) -> None:
    model = sign_global_model(key, federation_id="f1", round=1, weights=weights)
    with pytest.raises(CryptoError):
        verify_global_model(signing.generate_signing_key().public_key(), model, federation_id="f1")


def test_stale_or_foreign_model_is_refused(
    key: signing.Ed25519PrivateKey, weights: dict[str, np.ndarray]
) -> None:
    model = sign_global_model(key, federation_id="f1", round=3, weights=weights)
    with pytest.raises(Invalid, match="round 3"):
        verify_global_model(key.public_key(), model, federation_id="f1", round=4)
    with pytest.raises(Invalid, match="another federation"):
        verify_global_model(key.public_key(), model, federation_id="f2")


def test_malformed_wire_form(key: signing.Ed25519PrivateKey, weights: dict[str, np.ndarray]) -> None:
    wire = sign_global_model(key, federation_id="f1", round=0, weights=weights).to_bytes()
    for bad in (wire[:20], b"NOPE" + wire[4:], wire + b"x", wire[:-1]):
        with pytest.raises(BadRequest):
            GlobalModel.from_bytes(bad)
    with pytest.raises(Invalid, match="not signed"):
        GlobalModel("f1", 0, b"").to_bytes()


def test_config_must_be_plain_json(key: signing.Ed25519PrivateKey, weights: dict[str, np.ndarray]) -> None:
    with pytest.raises(Invalid):
        sign_global_model(key, federation_id="f1", round=0, weights=weights, config={"lr": float("nan")})
