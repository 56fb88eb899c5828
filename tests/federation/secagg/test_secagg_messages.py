"""Messages carry over JSON: binary as base64, unknown fields and bad base64 refused."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from bastion.federation.secagg import AdvertiseKeys, MaskedInput, SecAggConfig, UnmaskResponse


def test_binary_fields_are_base64_in_json() -> None:
    msg = MaskedInput(round_id="r1", client_id=3, masked_vector=b"\x00\x01\xff" * 40)
    data = json.loads(msg.model_dump_json())
    assert data["masked_vector"] == base64.b64encode(b"\x00\x01\xff" * 40).decode()
    assert "\n" not in data["masked_vector"]
    assert MaskedInput.model_validate_json(msg.model_dump_json()) == msg


def test_int_keyed_maps_round_trip() -> None:
    msg = UnmaskResponse(
        round_id="r1", client_id=1, self_mask_shares={2: b"a", 10: b"b"}, secret_key_shares={}
    )
    back = UnmaskResponse.model_validate_json(msg.model_dump_json())
    assert back.self_mask_shares == {2: b"a", 10: b"b"}


def test_bad_messages_are_refused() -> None:
    good = {
        "round_id": "r1",
        "client_id": 1,
        "enc_public_key": "AA==",
        "mask_public_key": "AA==",
        "signature": "AA==",
    }
    AdvertiseKeys.model_validate_json(json.dumps(good))
    with pytest.raises(ValidationError):
        AdvertiseKeys.model_validate_json(json.dumps(good | {"signature": "not base64!"}))
    with pytest.raises(ValidationError):
        AdvertiseKeys.model_validate_json(json.dumps(good | {"extra": 1}))
    with pytest.raises(ValidationError):
        AdvertiseKeys.model_validate_json(json.dumps(good | {"client_id": 0}))
    with pytest.raises(ValidationError):
        AdvertiseKeys.model_validate_json(json.dumps(good | {"round_id": "a/b"}))


def test_config_round_trips_through_json() -> None:
    cfg = SecAggConfig(round_id="r1", participants=(1, 2, 3, 4, 5), threshold=3, vector_length=10, clip=0.5)
    back = SecAggConfig.model_validate_json(cfg.model_dump_json())
    assert back == cfg
    assert back.graph == cfg.graph
