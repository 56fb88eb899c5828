"""Opening a downloaded model on the caller's side, writing it to files, and loading it again.

Mirrors the server's scheme (docs/jobs.md, "Model download"): the encrypted model is a model
package sealed either with a key derived from the caller's API key or to the caller's X25519
public key. On disk a model is two files: ``FILE`` (the skops or safetensors bytes, loadable by
those libraries) and ``FILE.json`` (format, config and SHA-256, needed to rebuild the predictor).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.client.errors import DecryptionError, ModelFileError

SCHEME_API_KEY = "api-key-hkdf-aes256gcm-v1"
SCHEME_X25519 = "x25519-sealed-box-v1"
INFO_PREFIX = b"bastion-model-download/v1|"
_HEAD = struct.Struct(">4sBI")
_MAGIC = b"BSTM"
EXTENSIONS = {"skops": ".skops", "safetensors": ".safetensors"}


@dataclass(frozen=True)
class DownloadedModel:
    job_id: str
    model_type: str
    model_format: str
    model_config: dict[str, Any]
    model_bytes: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()

    def default_filename(self) -> str:
        return f"model-{self.job_id[:8]}{EXTENSIONS.get(self.model_format, '.bin')}"

    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``path`` (model bytes) and ``path.json`` (what loading needs); both 0600."""
        model_path = Path(path)
        config_path = sidecar(model_path)
        sidecar_doc = {
            "bastion_model": 1,
            "job_id": self.job_id,
            "model_type": self.model_type,
            "model_format": self.model_format,
            "sha256": self.sha256,
            "model_config": self.model_config,
        }
        write_private(model_path, self.model_bytes)
        write_private(config_path, json.dumps(sidecar_doc, indent=2, sort_keys=True).encode())
        return model_path, config_path

    def predictor(self) -> Any:
        """A loaded model (bastion.ml.serialize.Predictor); never unpickles anything."""
        from bastion.ml.serialize import load_model

        return load_model(self.model_bytes, self.model_format, self.model_config)


def sidecar(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(f"the download's {what} is not valid base64", code="bad_download") from None


def _aad(job_id: str, scheme: str) -> bytes:
    return INFO_PREFIX + job_id.encode() + b"|" + scheme.encode()


def _unpack(blob: bytes) -> DownloadedModel:
    if len(blob) < _HEAD.size:
        raise DecryptionError("decrypted data is not a model package", code="bad_package")
    magic, version, size = _HEAD.unpack_from(blob)
    if magic != _MAGIC or version != 1 or _HEAD.size + size > len(blob):
        raise DecryptionError("decrypted data is not a model package", code="bad_package")
    try:
        header = json.loads(blob[_HEAD.size : _HEAD.size + size])
    except (ValueError, UnicodeDecodeError):
        raise DecryptionError("model package header is not JSON", code="bad_package") from None
    model = blob[_HEAD.size + size :]
    if hashlib.sha256(model).hexdigest() != header.get("sha256"):
        raise DecryptionError("model bytes do not match their SHA-256", code="integrity_error")
    return DownloadedModel(
        str(header["job_id"]),
        str(header["model_type"]),
        str(header["model_format"]),
        header["model_config"],
        model,
    )


def open_download(
    response: dict[str, Any], *, api_key: str | None = None, private_key: Any = None
) -> DownloadedModel:
    """Decrypt ``GET /training/model/{id}``'s body with the caller's API key or X25519 private key."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    job_id = str(response.get("job_id", ""))
    scheme = response.get("scheme")
    box = _b64(response.get("encrypted_model", ""), "encrypted_model")
    if scheme == SCHEME_API_KEY:
        if not api_key:
            raise DecryptionError(
                "this download was encrypted for an API key: pass api_key", code="key_required"
            )
        salt, nonce = _b64(response.get("salt"), "salt"), _b64(response.get("nonce"), "nonce")
        key = HKDF(hashes.SHA256(), 32, salt=salt, info=INFO_PREFIX + job_id.encode()).derive(
            api_key.encode()
        )
        try:
            blob = AESGCM(key).decrypt(nonce, box, _aad(job_id, scheme))
        except (InvalidTag, ValueError):
            raise DecryptionError(
                "the model could not be decrypted with this API key (or it was altered)",
                code="decrypt_failed",
            ) from None
    elif scheme == SCHEME_X25519:
        if private_key is None:
            raise DecryptionError(
                "this download was sealed to your X25519 key: pass private_key", code="key_required"
            )
        from bastion.crypto import sealed
        from bastion.errors import CryptoError

        try:
            blob = sealed.open(private_key, box, _aad(job_id, scheme))
        except CryptoError:
            raise DecryptionError(
                "the model could not be opened with this private key (or it was altered)",
                code="decrypt_failed",
            ) from None
    else:
        raise DecryptionError(f"unknown download scheme {scheme!r}", code="unknown_scheme")
    model = _unpack(blob)
    if model.job_id != job_id:
        raise DecryptionError("the package belongs to another job", code="integrity_error")
    return model


def load_model_file(path: str | os.PathLike[str]) -> Any:
    """Load a model written by ``DownloadedModel.save`` / ``bastion train download`` as a predictor."""
    model_path = Path(path)
    config_path = sidecar(model_path)
    try:
        doc = json.loads(config_path.read_text())
        data = model_path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelFileError(f"missing model file: {exc.filename}", code="missing_file") from None
    except ValueError:
        raise ModelFileError(f"{config_path.name} is not JSON", code="bad_sidecar") from None
    if not isinstance(doc, dict) or "model_format" not in doc or "model_config" not in doc:
        raise ModelFileError(f"{config_path.name} is not a Bastion model description", code="bad_sidecar")
    if hashlib.sha256(data).hexdigest() != doc.get("sha256"):
        raise ModelFileError(
            f"{model_path.name} does not match the SHA-256 in its .json", code="integrity_error"
        )
    model = DownloadedModel(
        str(doc.get("job_id", "")),
        str(doc.get("model_type", "")),
        str(doc["model_format"]),
        doc["model_config"],
        data,
    )
    return model.predictor()
