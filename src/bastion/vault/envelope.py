"""The on-disk format of one artifact version: an immutable data file and a small key slot beside it.

Data file ``vN.data`` (never rewritten once published)::

    "BSTV" | format (u8) | body length (u32 BE) | header body (canonical JSON)
    sealed segments (aead.encrypt_stream; associated data = SHA-256 of the header bytes)
    "BSTE" | plaintext size (u64 BE) | plaintext digest (32 bytes)          <- trailer, 44 bytes

Format versions (the byte after the magic; it is part of the header bytes, hence of the binding below,
so it cannot be edited to pick another digest without the key slot failing):

    1  plaintext digest = SHA-256 (read and verified; no longer written)
    2  plaintext digest = BLAKE3 (plain 32-byte hash, what ``b3sum`` prints); written since issue 16:
       about 3-4x SHA-256's speed on one core, so a verified read costs little more than AES-GCM

Anything else is refused as unsupported. Everything but the digest is identical in both versions.

The header body names the algorithm, artifact id, version, segment size, nonce prefix, creation time
and the caller's ``meta`` (authenticated, not encrypted). The trailer is written last because a stream's
size and hash are known only at its end.

Order of checks on read (:func:`open_version`): slot parse and name, header framing and format,
stored size, trailer framing, binding against the slot, KEK unwrap (authenticates header and trailer),
header parse, file length against the authenticated size; then each segment's tag as it is read;
then, if asked, the whole-plaintext digest with the format's algorithm.

Key slot ``vN.key`` (canonical JSON, rewritten atomically by a rotation)::

    artifact, version, binding = SHA-256(header bytes || trailer bytes),
    kek = {ring id, version}, nonce, wrapped data key, access = null | {kdf params, salt}

The wrap's associated data holds artifact, version, binding and access, so a slot only opens with the
exact header and trailer it was made for: a header swapped in from another artifact, an edited size,
format or hash, or a slot moved to another name all fail. With an access code the data key is first
sealed under a key derived from the code, and that sealed key is what the KEK wraps: a rotation
rewraps the outer layer without knowing any code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.crypto import aead, kdf
from bastion.crypto.keyring import KeyRing, WrappedKey
from bastion.errors import Forbidden, IntegrityError

MAGIC = b"BSTV"
TRAILER_MAGIC = b"BSTE"
FORMAT_SHA256 = 1
FORMAT_BLAKE3 = 2
FORMAT = FORMAT_BLAKE3
DIGEST_ALGS = {FORMAT_SHA256: "sha256", FORMAT_BLAKE3: "blake3"}
ALGORITHM = "A256GCM-STREAM"
PREFIX = struct.Struct("!4sBI")
TRAILER = struct.Struct("!4sQ32s")
MAX_HEADER_BODY = 64 * 1024
SLOT_FORMAT = 1
_SEGMENT_DOMAIN = b"bastion.vault.segment.v1\x00"
_CODE_DOMAIN = b"bastion.vault.code.v1\x00"


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    """Strict base64: the text must be the one canonical encoding, so no two texts mean the same bytes."""
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    data = base64.b64decode(text, validate=True)
    if _b64(data) != text:
        raise ValueError("non-canonical base64")
    return data


# -- data file -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactHeader:
    artifact: str
    version: int
    segment_size: int
    nonce_prefix: bytes
    created: str
    meta: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def digest_alg(self) -> str:
        return DIGEST_ALGS[self.format]

    def encode(self) -> bytes:
        body = canonical_json(
            {
                "alg": ALGORITHM,
                "artifact": self.artifact,
                "created": self.created,
                "meta": self.meta,
                "nonce_prefix": _b64(self.nonce_prefix),
                "segment_size": self.segment_size,
                "version": self.version,
            }
        )
        if len(body) > MAX_HEADER_BODY:
            raise ValueError("header too large")
        return PREFIX.pack(MAGIC, self.format, len(body)) + body

    @classmethod
    def decode(cls, raw: bytes) -> ArtifactHeader:
        """Parse header bytes that :func:`read_header` framed (and a key slot has since authenticated)."""
        try:
            doc = json.loads(raw[PREFIX.size :])
            header = cls(
                artifact=doc["artifact"],
                version=doc["version"],
                segment_size=aead.check_segment_size(doc["segment_size"]),
                nonce_prefix=_unb64(doc["nonce_prefix"]),
                created=doc["created"],
                meta=doc["meta"],
                format=raw[len(MAGIC)],
            )
            if header.format not in DIGEST_ALGS:
                raise ValueError("unsupported format")
            if doc["alg"] != ALGORITHM or len(header.nonce_prefix) != aead.NONCE_PREFIX_LEN:
                raise ValueError("unsupported algorithm")
            if not isinstance(header.meta, dict) or not isinstance(header.version, int):
                raise ValueError("bad field types")
        except Exception as exc:  # any parse failure of stored bytes is an integrity failure
            raise IntegrityError(f"header is unreadable ({exc.__class__.__name__})") from None
        return header


@dataclass(frozen=True)
class Trailer:
    size: int
    digest: bytes  # SHA-256 (format 1) or BLAKE3 (format 2) of the plaintext

    def encode(self) -> bytes:
        return TRAILER.pack(TRAILER_MAGIC, self.size, self.digest)

    @classmethod
    def decode(cls, raw: bytes) -> Trailer:
        if len(raw) != TRAILER.size:
            raise IntegrityError("trailer is truncated")
        magic, size, digest = TRAILER.unpack(raw)
        if magic != TRAILER_MAGIC:
            raise IntegrityError("trailer is damaged")
        return cls(size, digest)


def read_header(f: Any) -> bytes:
    """Read the framed header bytes from the start of an open data file (structure checks only)."""
    prefix = f.read(PREFIX.size)
    if len(prefix) != PREFIX.size:
        raise IntegrityError("header is truncated")
    magic, fmt, length = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise IntegrityError("not a vault artifact (bad magic)")
    if fmt not in DIGEST_ALGS:
        raise IntegrityError(f"unsupported artifact format {fmt}")
    if length > MAX_HEADER_BODY:
        raise IntegrityError("header length is out of range")
    body = f.read(length)
    if len(body) != length:
        raise IntegrityError("header is truncated")
    result: bytes = prefix + body
    return result


def segment_aad(header_bytes: bytes) -> bytes:
    return hashlib.sha256(_SEGMENT_DOMAIN + header_bytes).digest()


def binding(header_bytes: bytes, trailer_bytes: bytes) -> bytes:
    return hashlib.sha256(header_bytes + trailer_bytes).digest()


# -- key slot --------------------------------------------------------------------------------------


def slot_context(artifact: str, version: int, binding: bytes, access: dict[str, Any] | None) -> bytes:
    """What the KEK wrap binds: everything in a key slot that a rotation must not change."""
    return canonical_json(
        {
            "access": access,
            "artifact": artifact,
            "binding": _b64(binding),
            "format": SLOT_FORMAT,
            "version": version,
        }
    )


@dataclass(frozen=True)
class KeySlot:
    artifact: str
    version: int
    binding: bytes
    wrapped: WrappedKey
    access: dict[str, Any] | None = None

    def context(self) -> bytes:
        return slot_context(self.artifact, self.version, self.binding, self.access)

    def encode(self) -> bytes:
        doc = {
            "access": self.access,
            "artifact": self.artifact,
            "binding": _b64(self.binding),
            "format": SLOT_FORMAT,
            "kek": {"ring": self.wrapped.ring_id, "version": self.wrapped.kek_version},
            "nonce": _b64(self.wrapped.nonce),
            "version": self.version,
            "wrapped": _b64(self.wrapped.ciphertext),
        }
        return canonical_json(doc) + b"\n"

    @classmethod
    def decode(cls, raw: bytes) -> KeySlot:
        """Strict parse: a slot must be byte-for-byte the canonical encoding of what it says."""
        try:
            doc = json.loads(raw)
            if doc["format"] != SLOT_FORMAT:
                raise ValueError("unsupported key slot format")
            access = doc["access"]
            if access is not None:
                kdf.KdfParams.from_dict(access["kdf"])
                if len(_unb64(access["salt"])) != kdf.SALT_LEN or set(access) != {"kdf", "salt"}:
                    raise ValueError("bad access record")
            kek = doc["kek"]
            slot = cls(
                artifact=doc["artifact"],
                version=doc["version"],
                binding=_unb64(doc["binding"]),
                wrapped=WrappedKey(kek["ring"], kek["version"], _unb64(doc["nonce"]), _unb64(doc["wrapped"])),
                access=access,
            )
            if not isinstance(slot.wrapped.kek_version, int) or not isinstance(slot.wrapped.ring_id, str):
                raise ValueError("bad kek reference")
            if slot.encode() != raw:
                raise ValueError("non-canonical key slot")
        except Exception as exc:  # any parse failure of stored bytes is an integrity failure
            raise IntegrityError(f"key slot is unreadable ({exc.__class__.__name__})") from None
        return slot


def seal_key(
    keyring: KeyRing,
    data_key: bytes,
    *,
    artifact: str,
    version: int,
    binding: bytes,
    access_code: str | bytes | None = None,
    kdf_params: kdf.KdfParams = kdf.DEFAULT_PARAMS,
) -> KeySlot:
    """Wrap a data key for one artifact version, additionally under an access code if one is given."""
    access = None
    inner = data_key
    if access_code is not None:
        salt = kdf.new_salt()
        access = {"kdf": kdf_params.to_dict(), "salt": _b64(salt)}
        code_key = kdf.derive_key(access_code, salt, kdf_params)
        nonce = os.urandom(12)
        aad = _CODE_DOMAIN + slot_context(artifact, version, binding, access)
        inner = nonce + AESGCM(code_key).encrypt(nonce, data_key, aad)
    wrapped = keyring.wrap(inner, slot_context(artifact, version, binding, access))
    return KeySlot(artifact, version, binding, wrapped, access)


def open_key(keyring: KeyRing, slot: KeySlot, access_code: str | bytes | None = None) -> bytes:
    """Unwrap a slot's data key. IntegrityError if the slot or its binding is wrong; Forbidden on codes.

    The KEK layer is checked first, so a failure of the inner layer can only mean a wrong code.
    """
    inner = keyring.unwrap(slot.wrapped, slot.context())
    if slot.access is None:
        if len(inner) != aead.KEY_LEN:
            raise IntegrityError("unwrapped key has the wrong length")
        return inner
    if access_code is None:
        raise Forbidden("this artifact requires an access code", code="access_code_required")
    params = kdf.KdfParams.from_dict(slot.access["kdf"])
    code_key = kdf.derive_key(access_code, _unb64(slot.access["salt"]), params)
    try:
        return AESGCM(code_key).decrypt(inner[:12], inner[12:], _CODE_DOMAIN + slot.context())
    except InvalidTag:
        raise Forbidden("wrong access code", code="wrong_access_code") from None


def rewrap_key(keyring: KeyRing, slot: KeySlot) -> KeySlot:
    """The same slot under the active KEK version; the code layer (if any) is carried over untouched."""
    inner = keyring.unwrap(slot.wrapped, slot.context())
    return KeySlot(
        slot.artifact, slot.version, slot.binding, keyring.wrap(inner, slot.context()), slot.access
    )


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class OpenedVersion:
    """One version opened for reading: slot authenticated, header and trailer bound to it, file
    positioned at the first sealed segment. ``key`` is None when only authenticity was asked for."""

    file: BinaryIO
    header_bytes: bytes
    header: ArtifactHeader
    trailer: Trailer
    slot: KeySlot
    stored_size: int
    key: bytes | None

    @property
    def sealed_length(self) -> int:
        return self.stored_size - len(self.header_bytes) - TRAILER.size


def _read_frame(f: BinaryIO) -> tuple[bytes, bytes, int]:
    """Header bytes, trailer bytes and stored size of an open data file (structure checks only)."""
    header_bytes = read_header(f)
    stored_size = os.fstat(f.fileno()).st_size
    if stored_size < len(header_bytes) + aead.TAG_LEN + TRAILER.size:
        raise IntegrityError("data file is truncated")
    f.seek(stored_size - TRAILER.size)
    return header_bytes, f.read(TRAILER.size), stored_size


def _finish_open(
    f: BinaryIO,
    header_bytes: bytes,
    trailer: Trailer,
    slot: KeySlot,
    stored_size: int,
    key: bytes | None,
    artifact_id: str,
    version: int,
) -> OpenedVersion:
    """Parse the (now authenticated) header, check names and length, position at the first segment."""
    header = ArtifactHeader.decode(header_bytes)
    if header.artifact != artifact_id or header.version != version:
        raise IntegrityError("header belongs to another artifact or version")
    opened = OpenedVersion(f, header_bytes, header, trailer, slot, stored_size, key)
    if opened.sealed_length != aead.ciphertext_length(trailer.size, header.segment_size):
        raise IntegrityError("data file length does not match its size (truncated or extended)")
    f.seek(len(header_bytes))
    return opened


def open_version(
    f: BinaryIO,
    raw_slot: bytes,
    keyring: KeyRing,
    artifact_id: str,
    version: int,
    *,
    access_code: str | bytes | None,
    want_key: bool,
) -> OpenedVersion:
    """Check a key slot against the data file ``f`` before anything is decrypted.

    Order matters: the slot must belong here, its binding must equal the header and trailer on disk,
    the KEK wrap must open (this authenticates binding, hence header and trailer), and only then is
    the header parsed and the file length compared with the authenticated size.
    """
    slot = KeySlot.decode(raw_slot)
    if slot.artifact != artifact_id or slot.version != version:
        raise IntegrityError("key slot belongs to another artifact or version")
    header_bytes, trailer_bytes, stored_size = _read_frame(f)
    trailer = Trailer.decode(trailer_bytes)
    if not hmac.compare_digest(slot.binding, binding(header_bytes, trailer_bytes)):
        raise IntegrityError("header or trailer does not match the key slot (altered or swapped)")
    if want_key:
        key: bytes | None = open_key(keyring, slot, access_code)
    else:
        keyring.unwrap(slot.wrapped, slot.context())
        key = None
    return _finish_open(f, header_bytes, trailer, slot, stored_size, key, artifact_id, version)


def open_with_key(
    f: BinaryIO,
    artifact_id: str,
    version: int,
    key: bytes,
    *,
    expected_binding: bytes | None,
    want_format: int | None = None,
) -> OpenedVersion:
    """Open a data file with a data key handed over by the key ring's holder (no key ring here).

    ``expected_binding`` is the key slot's binding as that holder authenticated it: the header and trailer
    on disk must match it, exactly as :func:`open_version` checks them. ``None`` is only for a
    version not yet committed (its binding is being computed): then the header is still
    authenticated by every segment's tag and the trailer by the digest check the caller must ask for.
    """
    header_bytes, trailer_bytes, stored_size = _read_frame(f)
    trailer = Trailer.decode(trailer_bytes)
    if expected_binding is not None and not hmac.compare_digest(
        expected_binding, binding(header_bytes, trailer_bytes)
    ):
        raise IntegrityError("header or trailer does not match the key slot (altered or swapped)")
    if len(key) != aead.KEY_LEN:
        raise IntegrityError("data key has the wrong length")
    if want_format is not None and header_bytes[len(MAGIC)] != want_format:
        raise IntegrityError("artifact format is not the one reserved")
    placeholder = KeySlot(artifact_id, version, b"", WrappedKey("", 0, b"", b""))
    return _finish_open(f, header_bytes, trailer, placeholder, stored_size, key, artifact_id, version)
