"""Model download, encrypted so that only the caller can open it.

The plaintext is the job's model package (bastion.jobs.package). Two schemes:

``api-key-hkdf-aes256gcm-v1`` (caller authenticated with an API key)
    K = HKDF-SHA256(ikm = the API key as presented, salt = 16 random bytes,
                    info = b"bastion-model-download/v1|" + job_id)
    encrypted_model = base64(AES-256-GCM(K, nonce = 12 random bytes, package,
                             aad = b"bastion-model-download/v1|" + job_id + b"|" + scheme))
    The response carries ``salt`` and ``nonce`` (base64). The server stores only a hash of the key,
    derives K for this one response and forgets it; the caller re-derives K from its own key.

``x25519-sealed-box-v1`` (the caller registered an X25519 public key)
    encrypted_model = base64(bastion.crypto.sealed box to that key, same aad). Only the holder of
    the private key can open it: not the server, not someone who later steals the API key.

A caller signed in with a JWT and without a registered key gets a 409 saying how to register one.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete

from bastion.audit import AuditRecord
from bastion.crypto import sealed
from bastion.errors import Conflict, CryptoError, Invalid, NotFound
from bastion.store.base import utcnow
from bastion.store.tables import DownloadKey

if TYPE_CHECKING:
    from bastion.audit import AuditLog
    from bastion.auth.principal import Principal
    from bastion.jobs.service import JobService
    from bastion.store import Database

SCHEME_API_KEY = "api-key-hkdf-aes256gcm-v1"
SCHEME_X25519 = "x25519-sealed-box-v1"
SCHEMES = (SCHEME_API_KEY, SCHEME_X25519)
INFO_PREFIX = b"bastion-model-download/v1|"
SchemeChoice = Literal["api-key", "x25519"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def aad_for(job_id: str, scheme: str) -> bytes:
    return INFO_PREFIX + job_id.encode() + b"|" + scheme.encode()


def api_key_cipher_key(api_key: str, salt: bytes, job_id: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=salt, info=INFO_PREFIX + job_id.encode()).derive(api_key.encode())


def seal_for_api_key(api_key: str, job_id: str, package: bytes) -> dict[str, Any]:
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    key = api_key_cipher_key(api_key, salt, job_id)
    box = AESGCM(key).encrypt(nonce, package, aad_for(job_id, SCHEME_API_KEY))
    return {"encrypted_model": b64(box), "scheme": SCHEME_API_KEY, "salt": b64(salt), "nonce": b64(nonce)}


def seal_for_public_key(public_key: str, job_id: str, package: bytes) -> dict[str, Any]:
    box = sealed.seal(sealed.decode_public_key(public_key), package, aad_for(job_id, SCHEME_X25519))
    return {"encrypted_model": b64(box), "scheme": SCHEME_X25519, "public_key": public_key}


# -- registered public keys -----------------------------------------------------------------------


def check_public_key(text: str) -> str:
    try:
        sealed.seal(sealed.decode_public_key(text), b"")  # also refuses low-order points
    except (CryptoError, Invalid, ValueError) as exc:
        raise Invalid(
            "public_key must be a raw 32-byte X25519 public key, base64url without padding",
            code="invalid_public_key",
        ) from exc
    return text


class _Store(Protocol):
    db: Database
    audit: AuditLog


class DownloadKeys:
    def __init__(self, service: _Store) -> None:
        self.db = service.db
        self.audit = service.audit

    def get(self, user_id: str) -> DownloadKey | None:
        with self.db.session() as s:
            return s.get(DownloadKey, user_id)

    def put(self, principal: Principal, public_key: str, ip: str | None = None) -> DownloadKey:
        check_public_key(public_key)
        with self.db.session() as s:
            row = s.merge(DownloadKey(user_id=principal.user_id, public_key=public_key, created_at=utcnow()))
            self.audit.append(
                AuditRecord(
                    "training.download_key.set",
                    "success",
                    principal.user_id,
                    principal.username,
                    "download_key",
                    principal.user_id,
                    ip,
                    {},
                ),
                s,
            )
            return row

    def delete(self, principal: Principal, ip: str | None = None) -> None:
        with self.db.session() as s:
            # Idempotent: removing a key that is already gone answers the same as the first time.
            s.execute(delete(DownloadKey).where(DownloadKey.user_id == principal.user_id))
            self.audit.append(
                AuditRecord(
                    "training.download_key.delete",
                    "success",
                    principal.user_id,
                    principal.username,
                    "download_key",
                    principal.user_id,
                    ip,
                    {},
                ),
                s,
            )


# -- the download itself --------------------------------------------------------------------------


def download(
    service: JobService,
    principal: Principal,
    job_id: str,
    *,
    api_key: str | None,
    scheme: SchemeChoice | None = None,
    ip: str | None = None,
    transform: Callable[[Any, bytes], bytes] | None = None,
) -> dict[str, Any]:
    """The caller's completed model, encrypted for the caller (see the module docstring).

    ``transform(job, package)`` may replace the stored package before it is sealed (a fine-tuned
    adapter merged into its base weights for export)."""
    try:
        job = service.get(principal, job_id)
    except NotFound:
        _audit(service, principal, job_id[:64], ip, "denied", {"reason": "not_found"})
        raise
    if job.state != "completed" or not job.model_artifact_id:
        message = (
            f"the job is {job.state}; its model can be downloaded once it has completed"
            if job.state in ("pending", "running")
            else f"the job {'was ' + job.state if job.state == 'cancelled' else 'failed'}: it has no model"
        )
        raise Conflict(message, code="model_not_ready", state=job.state)
    package = service.ctx.vault.get_bytes(job.model_artifact_id, job.model_version)
    if transform is not None:
        package = transform(job, package)
    sealed_part = seal_for_caller(service, principal, job.id, package, api_key=api_key, scheme=scheme)
    _audit(service, principal, job.id, ip, "success", {"scheme": sealed_part["scheme"]})
    return {
        "success": True,
        "encrypted_model": sealed_part.pop("encrypted_model"),
        "job_id": job.id,
        **sealed_part,
        "model_type": job.model_type,
        "model_format": job.model_format,
        "package_bytes": len(package),
    }


def seal_for_caller(
    store: _Store,
    principal: Principal,
    binding_id: str,
    package: bytes,
    *,
    api_key: str | None,
    scheme: SchemeChoice | None,
) -> dict[str, Any]:
    """Encrypt ``package`` for the caller alone (registered X25519 key, else the API key presented);
    ``binding_id`` (a job or model-version id) is bound into the key derivation and the AAD."""
    registered = DownloadKeys(store).get(principal.user_id)
    use_x25519 = scheme == "x25519" or (scheme is None and registered is not None)
    if use_x25519 and registered is None:
        raise Conflict(
            "no X25519 public key is registered for you: PUT /api/v1/training/download-key first",
            code="download_key_required",
        )
    if not use_x25519 and (principal.via != "api_key" or not api_key):
        raise Conflict(
            "you signed in with a token, so there is no API key to derive the download key from: "
            "register an X25519 public key with PUT /api/v1/training/download-key "
            "(`bastion train download` does this for you) or call with your API key",
            code="download_key_required",
        )
    if use_x25519:
        assert registered is not None
        return seal_for_public_key(registered.public_key, binding_id, package)
    assert api_key is not None
    return seal_for_api_key(api_key, binding_id, package)


def _audit(
    service: JobService,
    principal: Principal,
    target: str,
    ip: str | None,
    outcome: Any,
    details: dict[str, Any],
) -> None:
    service.audit.append(
        AuditRecord(
            "training.download",
            outcome,
            principal.user_id,
            principal.username,
            "training_job",
            target,
            ip,
            details,
        )
    )
