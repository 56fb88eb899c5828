"""The key ring: versioned key-encryption keys (KEKs) derived from the master secret.

``KEK_v = HKDF-SHA256(master secret, salt_v, "bastion/keyring/v1/kek/<v>")``. Only the per-version salt
and a verifier (another HKDF output, useless for decryption) are stored, in ``keyring.json`` in the
vault directory; the master secret itself never touches the disk here. The verifier lets ``open`` tell
a wrong master key from a damaged artifact: it raises ConfigError at start-up instead of producing
garbage or a flood of integrity errors later.

Version states: ``active`` (wraps new data keys), ``retiring`` (an interrupted or running rotation
still needs it to unwrap), ``retired`` (salt and verifier erased: what it wrapped is gone for good).
A rotation may also move to a new master secret: open the ring with the new secret and the old one in
``previous_secrets``; the next ``rotate_begin`` derives the new version from the new secret.

Mutating calls (``rotate_begin``, ``rotate_finish``) must run under ``locked(exclusive=True)``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.clock import aware_utcnow
from bastion.crypto import _fs
from bastion.errors import ConfigError, IntegrityError

FILE_NAME = "keyring.json"
LOCK_NAME = ".lock"
FORMAT = 1
SALT_LEN = 32
NONCE_LEN = 12
ACTIVE, RETIRING, RETIRED = "active", "retiring", "retired"
_WRAP_DOMAIN = b"bastion.keyring.wrap.v1\x00"


@dataclass(frozen=True)
class KekVersion:
    version: int
    status: str
    created: str
    salt: bytes | None = None
    verifier: bytes | None = None
    retired: str | None = None


@dataclass(frozen=True)
class _State:
    """Everything loaded from the file, swapped in one assignment so threads never see half of it."""

    ring_id: str
    versions: list[KekVersion]
    keks: dict[int, AESGCM]
    source: dict[int, int]  # index into the given secrets: 0 = current master key
    stamp: tuple[int, int, int] | None


@dataclass(frozen=True)
class WrappedKey:
    """A secret sealed under one KEK version of one ring (``ring_id``)."""

    ring_id: str
    kek_version: int
    nonce: bytes
    ciphertext: bytes


def _now() -> str:
    return aware_utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def _hkdf(secret: bytes, salt: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info.encode()).derive(secret)


def _kek(secret: bytes, salt: bytes, version: int) -> bytes:
    return _hkdf(secret, salt, f"bastion/keyring/v1/kek/{version}")


def _verifier(secret: bytes, salt: bytes, version: int) -> bytes:
    return _hkdf(secret, salt, f"bastion/keyring/v1/verifier/{version}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


def _encode(ring_id: str, versions: Sequence[KekVersion]) -> bytes:
    rows: list[dict[str, Any]] = []
    for v in versions:
        row: dict[str, Any] = {"version": v.version, "status": v.status, "created": v.created}
        if v.salt is not None and v.verifier is not None:
            row.update(salt=_b64(v.salt), verifier=_b64(v.verifier))
        if v.retired is not None:
            row["retired"] = v.retired
        rows.append(row)
    doc = {"format": FORMAT, "kdf": "hkdf-sha256", "ring_id": ring_id, "versions": rows}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _decode(raw: bytes) -> tuple[str, list[KekVersion]]:
    try:
        doc = json.loads(raw)
        if doc["format"] != FORMAT or doc["kdf"] != "hkdf-sha256":
            raise ValueError("unsupported key ring format")
        ring_id = doc["ring_id"]
        if not isinstance(ring_id, str) or len(ring_id) != 32:
            raise ValueError("bad ring id")
        versions = []
        for row in doc["versions"]:
            status, number = row["status"], row["version"]
            if status not in (ACTIVE, RETIRING, RETIRED) or not isinstance(number, int) or number < 1:
                raise ValueError("bad version record")
            live = status != RETIRED
            versions.append(
                KekVersion(
                    version=number,
                    status=status,
                    created=str(row["created"]),
                    salt=_unb64(row["salt"]) if live else None,
                    verifier=_unb64(row["verifier"]) if live else None,
                    retired=str(row["retired"]) if not live else None,
                )
            )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{FILE_NAME} is damaged or unreadable ({exc.__class__.__name__})") from None
    numbers = [v.version for v in versions]
    if len(set(numbers)) != len(numbers) or [v.status for v in versions].count(ACTIVE) != 1:
        raise ConfigError(f"{FILE_NAME} is inconsistent: it needs exactly one active version")
    return ring_id, sorted(versions, key=lambda v: v.version)


class KeyRing:
    """Versioned KEKs for one vault directory. Build it with :meth:`open`."""

    def __init__(self, vault_dir: Path, secrets_: Sequence[bytes]) -> None:
        self._dir = vault_dir
        self._path = vault_dir / FILE_NAME
        self._secrets = list(secrets_)
        self._state = _State("", [], {}, {}, None)
        self.created = False

    # -- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        vault_dir: Path,
        master_secret: bytes | str,
        *,
        previous_secrets: Sequence[bytes | str] = (),
    ) -> KeyRing:
        """Open (or, in an empty directory, create) the ring; ConfigError if the master key is wrong."""
        given = [master_secret, *previous_secrets]
        raw = [s.encode() if isinstance(s, str) else bytes(s) for s in given]
        if not raw[0]:
            raise ConfigError("BASTION_MASTER_KEY is empty")
        ring = cls(_fs.ensure_private_dir(Path(vault_dir)), raw)
        if not ring._path.exists():
            ring._create()
        ring._load()
        return ring

    def _create(self) -> None:
        extra = [
            p.name
            for p in self._dir.iterdir()
            if p.name != LOCK_NAME and not p.name.startswith(_fs.TEMP_PREFIX)
        ]
        if extra:
            raise ConfigError(
                f"vault directory {self._dir} has content but no {FILE_NAME}; refusing to start a new "
                "key ring over existing data (restore the key ring from a backup)"
            )
        first = self._new_version(1, 0)
        tmp = _fs.write_temp(self._dir, _encode(secrets.token_hex(16), [first]))
        try:
            _fs.publish_new(tmp, self._path)
            self.created = True
        except FileExistsError:
            pass  # another process created it first; use theirs
        _fs.fsync_dir(self._dir)

    def _new_version(self, number: int, source: int) -> KekVersion:
        salt = os.urandom(SALT_LEN)
        return KekVersion(
            version=number,
            status=ACTIVE,
            created=_now(),
            salt=salt,
            verifier=_verifier(self._secrets[source], salt, number),
        )

    def _load(self) -> None:
        try:
            st = self._path.stat()
            raw = self._path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {FILE_NAME}: {exc.strerror}") from None
        ring_id, versions = _decode(raw)
        keks: dict[int, AESGCM] = {}
        source: dict[int, int] = {}
        for v in versions:
            if v.status == RETIRED or v.salt is None or v.verifier is None:
                continue
            for index, secret in enumerate(self._secrets):
                if hmac.compare_digest(_verifier(secret, v.salt, v.version), v.verifier):
                    keks[v.version] = AESGCM(_kek(secret, v.salt, v.version))
                    source[v.version] = index
                    break
            else:
                if v.status == ACTIVE:
                    raise ConfigError(
                        "BASTION_MASTER_KEY does not match this vault's key ring (wrong master key?)"
                    )
                raise ConfigError(
                    f"a key rotation is in progress and key version {v.version} needs a master key "
                    "that was not given (pass the previous master key too)"
                )
        self._state = _State(ring_id, versions, keks, source, (st.st_ino, st.st_mtime_ns, st.st_size))

    def refresh(self) -> bool:
        """Reload ``keyring.json`` if another process changed it; True if it did."""
        with contextlib.suppress(OSError):
            st = self._path.stat()
            if (st.st_ino, st.st_mtime_ns, st.st_size) == self._state.stamp:
                return False
        self._load()
        return True

    def _save(self, versions: list[KekVersion]) -> None:
        _fs.atomic_write(self._path, _encode(self.ring_id, versions))
        self._load()

    @contextlib.contextmanager
    def locked(self, *, exclusive: bool) -> Iterator[None]:
        """The vault-wide lock: shared while committing a new wrap, exclusive while rotating."""
        with _fs.locked(self._dir / LOCK_NAME, exclusive=exclusive):
            yield

    # -- state -------------------------------------------------------------------------------------

    @property
    def ring_id(self) -> str:
        return self._state.ring_id

    @property
    def versions(self) -> list[KekVersion]:
        return list(self._state.versions)

    @property
    def active_version(self) -> int:
        return next(v.version for v in self._state.versions if v.status == ACTIVE)

    @property
    def retiring_versions(self) -> list[int]:
        return [v.version for v in self._state.versions if v.status == RETIRING]

    @property
    def rotation_pending(self) -> bool:
        """A rotation was interrupted, or the active version still hangs on a previous master key."""
        return bool(self.retiring_versions) or self._state.source[self.active_version] != 0

    # -- wrapping ----------------------------------------------------------------------------------

    @staticmethod
    def _aad(ring_id: str, version: int, context: bytes) -> bytes:
        return _WRAP_DOMAIN + ring_id.encode() + b"\x00" + version.to_bytes(4, "big") + context

    def wrap(self, plaintext: bytes, context: bytes) -> WrappedKey:
        """Seal ``plaintext`` under the active KEK; ``context`` (e.g. artifact id + header hash) is bound."""
        state = self._state
        version = next(v.version for v in state.versions if v.status == ACTIVE)
        nonce = os.urandom(NONCE_LEN)
        sealed = state.keks[version].encrypt(nonce, plaintext, self._aad(state.ring_id, version, context))
        return WrappedKey(state.ring_id, version, nonce, sealed)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Open a wrap; IntegrityError if it was altered, bound to another context, or its KEK is gone."""
        if wrapped.kek_version not in self._state.keks:
            self.refresh()
        state = self._state
        if not hmac.compare_digest(wrapped.ring_id.encode(), state.ring_id.encode()):
            raise IntegrityError("key was wrapped by another key ring")
        kek = state.keks.get(wrapped.kek_version)
        if kek is None:
            raise IntegrityError(
                f"key version {wrapped.kek_version} is retired or unknown", code="key_unavailable"
            )
        if len(wrapped.nonce) != NONCE_LEN:
            raise IntegrityError("key wrap has a malformed nonce")
        try:
            aad = self._aad(state.ring_id, wrapped.kek_version, context)
            return kek.decrypt(wrapped.nonce, wrapped.ciphertext, aad)
        except InvalidTag:
            raise IntegrityError("key wrap failed authentication") from None

    # -- rotation ----------------------------------------------------------------------------------

    def rotate_begin(self) -> int:
        """Start a rotation, or resume an interrupted one; returns the (new) active version.

        Resuming keeps the active version when it comes from the current master secret, so rerunning
        after a crash never piles up versions. Caller holds ``locked(exclusive=True)``.
        """
        self.refresh()
        if self.retiring_versions and self._state.source[self.active_version] == 0:
            return self.active_version
        versions = self._state.versions
        number = max(v.version for v in versions) + 1
        demoted = [replace(v, status=RETIRING) if v.status == ACTIVE else v for v in versions]
        self._save([*demoted, self._new_version(number, 0)])
        return number

    def rotate_finish(self) -> list[int]:
        """Retire every retiring version (erasing its salt); the caller has rewrapped everything."""
        self.refresh()
        done = self.retiring_versions
        if not done:
            return []
        stamp = _now()
        self._save(
            [
                KekVersion(v.version, RETIRED, v.created, retired=stamp) if v.status == RETIRING else v
                for v in self._state.versions
            ]
        )
        return done
