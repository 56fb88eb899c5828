"""The download schemes: server-side sealing and the SDK's opening agree, and nobody else can open."""

from __future__ import annotations

import base64

import pytest

from bastion.client import DecryptionError, open_download
from bastion.crypto import sealed
from bastion.errors import IntegrityError, Invalid
from bastion.jobs.download import check_public_key, seal_for_api_key, seal_for_public_key
from bastion.jobs.package import ModelPackage, pack, unpack

JOB = "0f8fad5b-d9cb-469f-a165-70867728950e"
PACKAGE = ModelPackage(
    JOB, "alzheimer_classifier", "skops", {"task": "classification", "n": [1, 2]}, b"PK\x03\x04model"
)


def _body(part: dict[str, object]) -> dict[str, object]:
    return {"success": True, "job_id": JOB, **part}


def test_package_round_trip_and_integrity() -> None:
    blob = pack(PACKAGE)
    assert unpack(blob) == PACKAGE
    with pytest.raises(IntegrityError):
        unpack(blob[:-1] + b"X")
    with pytest.raises(Invalid):
        unpack(b"pickle")


def test_api_key_scheme_opens_only_with_the_same_key() -> None:
    key = "bst_" + "a" * 40
    body = _body(seal_for_api_key(key, JOB, pack(PACKAGE)))
    opened = open_download(body, api_key=key)
    assert (opened.model_bytes, opened.model_config, opened.model_format) == (
        PACKAGE.model_bytes,
        PACKAGE.model_config,
        "skops",
    )
    with pytest.raises(DecryptionError):
        open_download(body, api_key="bst_" + "b" * 40)
    with pytest.raises(DecryptionError):
        open_download(dict(body, job_id="another-job"), api_key=key)
    again = _body(seal_for_api_key(key, JOB, pack(PACKAGE)))
    assert again["encrypted_model"] != body["encrypted_model"], "fresh salt and nonce every time"
    tampered = bytearray(base64.b64decode(str(body["encrypted_model"])))
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        open_download(dict(body, encrypted_model=base64.b64encode(tampered).decode()), api_key=key)


def test_x25519_scheme_opens_only_with_the_private_key() -> None:
    mine, theirs = sealed.generate_private_key(), sealed.generate_private_key()
    public = sealed.encode_public_key(mine)
    body = _body(seal_for_public_key(check_public_key(public), JOB, pack(PACKAGE)))
    assert open_download(body, private_key=mine).model_bytes == PACKAGE.model_bytes
    with pytest.raises(DecryptionError):
        open_download(body, private_key=theirs)
    with pytest.raises(DecryptionError):
        open_download(body, api_key="bst_whatever")


@pytest.mark.parametrize(
    "text", ["", "not base64!", "A" * 43, base64.urlsafe_b64encode(b"\0" * 32).decode().rstrip("=")]
)
def test_bad_public_keys_are_refused(text: str) -> None:
    with pytest.raises(Invalid):
        check_public_key(text)
