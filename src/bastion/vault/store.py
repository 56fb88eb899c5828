"""VaultStore: the encrypted, versioned artifact store on the file system.

Layout under ``root`` (0700 directories, 0600 files)::

    keyring.json  .lock                     <- the KeyRing
    artifacts/<artifact id>/vN.data         <- immutable header + sealed segments + trailer
    artifacts/<artifact id>/vN.key          <- key slot (the only thing a rotation rewrites)

A version is committed once its key slot exists: a put reserves ``vN.data`` (O_EXCL, so two writers
never share a number), streams into a temporary file, fsyncs it, renames it over the reservation and
only then publishes ``vN.key``. A crash at any point leaves the earlier versions as they were; the
half-written version is never listed (``verify`` reports it as incomplete). Artifact ids are checked
against a strict pattern before they are ever joined to a path.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hmac
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bastion.clock import aware_utcnow
from bastion.crypto import _fs, aead, kdf
from bastion.crypto.keyring import KeyRing
from bastion.errors import IntegrityError, Invalid, NotFound
from bastion.vault import envelope as env
from bastion.vault.digest import PipelinedDigest

ARTIFACT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_META_BYTES = 16 * 1024
_VERSION_FILE = re.compile(r"v([1-9][0-9]{0,9})\.(data|key)")


def check_artifact_id(artifact_id: object) -> str:
    """Return ``artifact_id`` if it is a safe file name (letters, digits, ``._-``; 1-128; no leading dot)."""
    if not isinstance(artifact_id, str) or not ARTIFACT_ID_PATTERN.fullmatch(artifact_id):
        raise Invalid(
            "artifact id must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            code="invalid_artifact_id",
        )
    return artifact_id


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid("version must be a positive integer", code="invalid_version")
    return version


def check_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        return {}
    try:
        if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
            raise TypeError("meta must be a dict with string keys")
        encoded = env.canonical_json(meta)
    except (TypeError, ValueError):
        raise Invalid("meta must be a JSON object", code="invalid_meta") from None
    if len(encoded) > MAX_META_BYTES:
        raise Invalid(f"meta is larger than {MAX_META_BYTES} bytes", code="invalid_meta")
    return dict(meta)


def _named(exc: IntegrityError, artifact_id: str, version: int) -> IntegrityError:
    details = {k: v for k, v in exc.details.items() if k not in ("artifact", "version")}
    return IntegrityError(
        f"artifact {artifact_id!r} version {version}: {exc.message}",
        code=exc.code,
        artifact=artifact_id,
        version=version,
        **details,
    )


def write_version_file(
    tmp: Path,
    header_bytes: bytes,
    header: env.ArtifactHeader,
    key: bytes,
    chunks: Iterable[bytes | bytearray | memoryview],
) -> bytes:
    """Stream header, sealed segments and trailer into ``tmp`` and fsync it; returns the trailer."""
    hasher = PipelinedDigest(header.digest_alg)
    size = 0
    try:
        with os.fdopen(_fs.open_private(tmp, exclusive=False), "wb") as f:
            f.write(header_bytes)
            aad = env.segment_aad(header_bytes)
            for plain, sealed in aead.encrypt_stream(
                key, header.nonce_prefix, aad, chunks, header.segment_size
            ):
                hasher.update(plain)
                f.write(sealed)
                size += len(plain)
            trailer_bytes = env.Trailer(size, hasher.digest()).encode()
            f.write(trailer_bytes)
            f.flush()
            os.fsync(f.fileno())
    finally:
        hasher.close()
    return trailer_bytes


def read_segments(
    opened: env.OpenedVersion, artifact_id: str, version: int, verify_digest: bool
) -> Iterator[bytes]:
    """Decrypt an opened version segment by segment (each authenticated), closing its file at the end."""
    assert opened.key is not None
    digest = PipelinedDigest(opened.header.digest_alg) if verify_digest else None
    with opened.file as f, contextlib.ExitStack() as stack:
        if digest is not None:
            stack.callback(digest.close)
        segments = aead.decrypt_stream(
            opened.key,
            opened.header.nonce_prefix,
            env.segment_aad(opened.header_bytes),
            f.read,
            opened.sealed_length,
            opened.header.segment_size,
        )
        try:
            for segment in segments:
                if digest is not None:
                    digest.update(segment)
                yield segment
        except IntegrityError as exc:
            raise _named(exc, artifact_id, version) from None
    if digest is not None and not hmac.compare_digest(digest.digest(), opened.trailer.digest):
        alg = opened.header.digest_alg
        raise _named(IntegrityError(f"plaintext {alg} digest does not match"), artifact_id, version)


@dataclass(frozen=True)
class StagedVersion:
    """A reserved version that a key-ring-less writer fills (see ``VaultStore.reserve_staged``)."""

    artifact_id: str
    version: int
    key: bytes
    path: Path
    segment_size: int
    format: int

    def for_writer(self) -> dict[str, Any]:
        """What the writer needs (JSON): the version number, the data key, the file and the format."""
        return {
            "version": self.version,
            "key": base64.b64encode(self.key).decode(),
            "path": str(self.path),
            "segment_size": self.segment_size,
            "format": self.format,
        }


@dataclass(frozen=True)
class ArtifactInfo:
    artifact_id: str
    version: int
    size: int
    digest: str  # hex; SHA-256 for format-1 versions, BLAKE3 for format 2 (see ``digest_alg``)
    created: str
    meta: dict[str, Any]
    kek_version: int
    access_code_required: bool
    stored_size: int
    digest_alg: str = "blake3"
    format: int = env.FORMAT

    @property
    def sha256(self) -> str | None:
        """The plaintext SHA-256 where the stored format has one (format 1), else None."""
        return self.digest if self.digest_alg == "sha256" else None


class VaultStore:
    """Encrypted artifact store. Thread-safe; several processes may share one ``root``."""

    def __init__(
        self,
        root: Path,
        keyring: KeyRing,
        *,
        segment_size: int = aead.DEFAULT_SEGMENT_SIZE,
        kdf_params: kdf.KdfParams = kdf.DEFAULT_PARAMS,
        keep_versions: int | None = None,
        write_format: int = env.FORMAT,
    ) -> None:
        self.root = _fs.ensure_private_dir(Path(root))
        self.keyring = keyring
        self.segment_size = aead.check_segment_size(segment_size)
        self.kdf_params = kdf_params
        if keep_versions is not None and keep_versions < 1:
            raise Invalid("keep_versions must be at least 1")
        self.keep_versions = keep_versions
        if write_format not in env.DIGEST_ALGS:
            raise Invalid(f"unknown vault format {write_format}")
        self.write_format = write_format  # older formats only to test that they stay readable
        self._artifacts = _fs.ensure_private_dir(self.root / "artifacts")

    @classmethod
    def open(cls, root: Path, master_secret: bytes | str, **options: Any) -> VaultStore:
        """Open the key ring in ``root`` (ConfigError on a wrong master key) and the store over it."""
        return cls(root, KeyRing.open(Path(root), master_secret), **options)

    # -- paths -------------------------------------------------------------------------------------

    def _dir(self, artifact_id: str) -> Path:
        return self._artifacts / check_artifact_id(artifact_id)

    @staticmethod
    def _data_path(directory: Path, version: int) -> Path:
        return directory / f"v{version}.data"

    @staticmethod
    def _key_path(directory: Path, version: int) -> Path:
        return directory / f"v{version}.key"

    @staticmethod
    def _scan(directory: Path) -> tuple[set[int], set[int]]:
        """Version numbers that have a data file, and those that have a key slot."""
        data: set[int] = set()
        keys: set[int] = set()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(directory):
                m = _VERSION_FILE.fullmatch(name)
                if m:
                    (data if m.group(2) == "data" else keys).add(int(m.group(1)))
        return data, keys

    # -- listing -----------------------------------------------------------------------------------

    def scan(self) -> Iterator[tuple[str, builtins.list[int], builtins.list[int]]]:
        """``(artifact_id, committed versions, incomplete versions)`` for every artifact directory.

        Incomplete versions have a data file but no key slot: a write in progress or an interrupted one.
        """
        for name in sorted(os.listdir(self._artifacts)):
            if ARTIFACT_ID_PATTERN.fullmatch(name):
                data, keys = self._scan(self._artifacts / name)
                yield name, sorted(keys), sorted(data - keys)

    def list(self) -> builtins.list[str]:
        """Ids of every artifact that has at least one committed version."""
        return [artifact_id for artifact_id, committed, _ in self.scan() if committed]

    def versions(self, artifact_id: str) -> builtins.list[int]:
        """Committed versions, oldest first; NotFound if there are none."""
        committed = sorted(self._scan(self._dir(artifact_id))[1])
        if not committed:
            raise NotFound(f"artifact {artifact_id!r} not found")
        return committed

    def _resolve(self, artifact_id: str, version: int | None) -> int:
        if version is None:
            return self.versions(artifact_id)[-1]
        version = _check_version(version)
        if not self._key_path(self._dir(artifact_id), version).exists():
            raise NotFound(f"artifact {artifact_id!r} version {version} not found")
        return version

    # -- writing -----------------------------------------------------------------------------------

    def put_bytes(
        self,
        artifact_id: str,
        data: bytes,
        *,
        access_code: str | bytes | None = None,
        meta: dict[str, Any] | None = None,
    ) -> ArtifactInfo:
        return self.put_stream(artifact_id, [data], access_code=access_code, meta=meta)

    def put_stream(
        self,
        artifact_id: str,
        chunks: Iterable[bytes | bytearray | memoryview],
        *,
        access_code: str | bytes | None = None,
        meta: dict[str, Any] | None = None,
    ) -> ArtifactInfo:
        """Encrypt ``chunks`` (any sizes) into a new version, in constant memory; returns its info."""
        check_artifact_id(artifact_id)
        meta = check_meta(meta)
        if access_code is not None:
            kdf.normalize_code(access_code)
        directory = _fs.ensure_private_dir(self._dir(artifact_id))
        version = self._reserve(directory)
        data_path = self._data_path(directory, version)
        tmp = _fs.temp_path(directory)
        try:
            header = self._new_header(artifact_id, version, meta)
            key = aead.new_key()
            header_bytes = header.encode()
            trailer_bytes = write_version_file(tmp, header_bytes, header, key, chunks)
            return self._publish(directory, header, header_bytes, trailer_bytes, tmp, key, access_code)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if not self._key_path(directory, version).exists():
                data_path.unlink(missing_ok=True)
            raise

    def _new_header(self, artifact_id: str, version: int, meta: dict[str, Any]) -> env.ArtifactHeader:
        return env.ArtifactHeader(
            artifact=artifact_id,
            version=version,
            segment_size=self.segment_size,
            nonce_prefix=aead.new_nonce_prefix(),
            created=aware_utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            meta=meta,
            format=self.write_format,
        )

    def _publish(
        self,
        directory: Path,
        header: env.ArtifactHeader,
        header_bytes: bytes,
        trailer_bytes: bytes,
        tmp: Path,
        key: bytes,
        access_code: str | bytes | None,
    ) -> ArtifactInfo:
        """Wrap ``key`` into the key slot, move the finished data file ``tmp`` over its reservation
        and publish the slot (the commit point); the new version's info."""
        artifact_id, version = header.artifact, header.version
        binding = env.binding(header_bytes, trailer_bytes)
        with self.keyring.locked(exclusive=False):
            self.keyring.refresh()
            slot = env.seal_key(
                self.keyring,
                key,
                artifact=artifact_id,
                version=version,
                binding=binding,
                access_code=access_code,
                kdf_params=self.kdf_params,
            )
            slot_tmp = _fs.write_temp(directory, slot.encode())
            os.replace(tmp, self._data_path(directory, version))
            _fs.publish_new(slot_tmp, self._key_path(directory, version))
            _fs.fsync_dir(directory)
        if self.keep_versions is not None:
            self._prune(directory, self.keep_versions)
        # What info() would read back, from what was just written (saves a re-open and a KEK unwrap).
        trailer = env.Trailer.decode(trailer_bytes)
        return ArtifactInfo(
            artifact_id=artifact_id,
            version=version,
            size=trailer.size,
            digest=trailer.digest.hex(),
            created=header.created,
            meta=header.meta,
            kek_version=slot.wrapped.kek_version,
            access_code_required=slot.access is not None,
            stored_size=len(header_bytes)
            + aead.ciphertext_length(trailer.size, header.segment_size)
            + len(trailer_bytes),
            digest_alg=header.digest_alg,
            format=header.format,
        )

    # -- staged writes (a job process encrypts, this process commits) ------------------------------

    def reserve_staged(self, artifact_id: str) -> StagedVersion:
        """Reserve the next version of ``artifact_id`` for a writer that holds no key ring.

        The writer gets a fresh data key and an empty temporary file beside the reservation; it
        writes the version there (:func:`write_version_file`) and :meth:`commit_staged` checks and
        publishes it. The key is never wrapped until then; an abandoned reservation is dropped with
        :meth:`abandon_staged`.
        """
        directory = _fs.ensure_private_dir(self._dir(artifact_id))
        version = self._reserve(directory)
        tmp = _fs.temp_path(directory)
        try:
            os.close(_fs.open_private(tmp))
        except BaseException:
            self._data_path(directory, version).unlink(missing_ok=True)
            raise
        return StagedVersion(artifact_id, version, aead.new_key(), tmp, self.segment_size, self.write_format)

    def commit_staged(self, staged: StagedVersion) -> ArtifactInfo:
        """Check a staged version end to end with the key it was given, then publish it.

        IntegrityError (and the reservation dropped) if the file is not exactly one well-formed version
        of the reserved artifact and number, encrypted under that key with a matching digest.
        """
        directory = self._dir(staged.artifact_id)
        try:
            with open(staged.path, "rb") as f:
                opened = env.open_with_key(
                    f,
                    staged.artifact_id,
                    staged.version,
                    staged.key,
                    expected_binding=None,
                    want_format=staged.format,
                )
                header_bytes, header = opened.header_bytes, opened.header
                trailer_bytes = opened.trailer.encode()
                for _ in read_segments(opened, staged.artifact_id, staged.version, verify_digest=True):
                    pass
            return self._publish(
                directory, header, header_bytes, trailer_bytes, staged.path, staged.key, None
            )
        except BaseException:
            self.abandon_staged(staged)
            raise

    def abandon_staged(self, staged: StagedVersion) -> None:
        """Drop a reservation that will never be committed (its version number stays unused)."""
        directory = self._dir(staged.artifact_id)
        staged.path.unlink(missing_ok=True)
        if not self._key_path(directory, staged.version).exists():
            self._data_path(directory, staged.version).unlink(missing_ok=True)

    def _reserve(self, directory: Path) -> int:
        data, keys = self._scan(directory)
        version = max(data | keys, default=0) + 1
        while True:
            try:
                os.close(_fs.open_private(self._data_path(directory, version)))
                return version
            except FileExistsError:
                version += 1

    def _prune(self, directory: Path, keep: int) -> None:
        """Drop committed versions beyond the newest ``keep``: key slot first, so none is half-visible."""
        committed = sorted(self._scan(directory)[1])
        for version in committed[:-keep]:
            self._key_path(directory, version).unlink(missing_ok=True)
            self._data_path(directory, version).unlink(missing_ok=True)
        _fs.fsync_dir(directory)

    def delete(self, artifact_id: str) -> None:
        """Remove an artifact and all its versions; NotFound if it does not exist."""
        directory = self._dir(artifact_id)
        graveyard = self._artifacts / f".deleted-{secrets.token_hex(8)}"
        # Shared lock: a backup (which holds it exclusively) never sees half of an artifact vanish.
        with self.keyring.locked(exclusive=False):
            try:
                os.rename(directory, graveyard)
            except FileNotFoundError:
                raise NotFound(f"artifact {artifact_id!r} not found") from None
            _fs.fsync_dir(self._artifacts)
        shutil.rmtree(graveyard)

    def delete_versions(self, artifact_id: str, versions: Iterable[int]) -> None:
        """Remove some committed versions (key slot first, so none is half-visible); the artifact
        goes with its last version. For versions shared by several rows (bastion.catalog.stored,
        which calls this only for versions no row names). A later put numbers after the highest
        version left, so a deleted newest number can be used again."""
        directory = self._dir(artifact_id)
        doomed = {_check_version(v) for v in versions}
        with self.keyring.locked(exclusive=False):
            for version in sorted(doomed):
                self._key_path(directory, version).unlink(missing_ok=True)
                self._data_path(directory, version).unlink(missing_ok=True)
            if directory.exists():
                _fs.fsync_dir(directory)
        data, keys = self._scan(directory)
        if not data and not keys:
            with contextlib.suppress(NotFound):
                self.delete(artifact_id)

    # -- reading -----------------------------------------------------------------------------------

    def _open(
        self, artifact_id: str, version: int, *, access_code: str | bytes | None, want_key: bool
    ) -> env.OpenedVersion:
        directory = self._dir(artifact_id)
        try:
            raw_slot = self._key_path(directory, version).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {artifact_id!r} version {version} not found") from None
        try:
            f: BinaryIO = open(self._data_path(directory, version), "rb")  # noqa: SIM115 - handed to caller
        except FileNotFoundError:
            raise _named(IntegrityError("data file is missing"), artifact_id, version) from None
        try:
            return env.open_version(
                f, raw_slot, self.keyring, artifact_id, version, access_code=access_code, want_key=want_key
            )
        except IntegrityError as exc:
            f.close()
            raise _named(exc, artifact_id, version) from None
        except BaseException:
            f.close()
            raise

    def info(self, artifact_id: str, version: int | None = None) -> ArtifactInfo:
        """Authenticated facts about a version (latest by default); needs no access code."""
        version = self._resolve(artifact_id, version)
        opened = self._open(artifact_id, version, access_code=None, want_key=False)
        opened.file.close()
        return ArtifactInfo(
            artifact_id=artifact_id,
            version=version,
            size=opened.trailer.size,
            digest=opened.trailer.digest.hex(),
            created=opened.header.created,
            meta=opened.header.meta,
            kek_version=opened.slot.wrapped.kek_version,
            access_code_required=opened.slot.access is not None,
            stored_size=opened.stored_size,
            digest_alg=opened.header.digest_alg,
            format=opened.header.format,
        )

    def open_stream(
        self,
        artifact_id: str,
        version: int | None = None,
        *,
        access_code: str | bytes | None = None,
        verify_digest: bool = False,
    ) -> Iterator[bytes]:
        """Decrypt a version segment by segment, each authenticated before it is yielded.

        Key, code and header checks run now, before this returns (a wrong code raises here, not on
        the first ``next``). A bad segment raises IntegrityError naming the artifact when reached.
        ``verify_digest`` also checks the whole-plaintext digest (the format's) after the last segment.
        """
        version = self._resolve(artifact_id, version)
        opened = self._open(artifact_id, version, access_code=access_code, want_key=True)
        return read_segments(opened, artifact_id, version, verify_digest)

    def data_key(self, artifact_id: str, version: int | None = None) -> tuple[int, bytes, bytes, Path]:
        """``(version, data key, binding, data file)`` of a version, checked as a read would check it.

        For handing one version to a process that holds no key ring (``bastion.vault.scoped``): it
        can decrypt that version and nothing else. Forbidden for a version behind an access code.
        """
        version = self._resolve(artifact_id, version)
        opened = self._open(artifact_id, version, access_code=None, want_key=True)
        opened.file.close()
        assert opened.key is not None
        return version, opened.key, opened.slot.binding, self._data_path(self._dir(artifact_id), version)

    def get_bytes(
        self, artifact_id: str, version: int | None = None, *, access_code: str | bytes | None = None
    ) -> bytes:
        """The whole plaintext, with its digest checked too. Use ``open_stream`` for large artifacts."""
        return b"".join(self.open_stream(artifact_id, version, access_code=access_code, verify_digest=True))

    # -- rotation support --------------------------------------------------------------------------

    def rewrap(self, artifact_id: str, version: int) -> bool:
        """Rewrap one key slot under the active KEK (atomically); False if it already was."""
        path = self._key_path(self._dir(artifact_id), version)
        try:
            slot = env.KeySlot.decode(path.read_bytes())
            if slot.artifact != artifact_id or slot.version != version:
                raise IntegrityError("key slot belongs to another artifact or version")
            if slot.wrapped.ring_id == self.keyring.ring_id and (
                slot.wrapped.kek_version == self.keyring.active_version
            ):
                return False
            fresh = env.rewrap_key(self.keyring, slot)
        except IntegrityError as exc:
            raise _named(exc, artifact_id, version) from None
        _fs.atomic_write(path, fresh.encode())
        return True

    # -- access codes ------------------------------------------------------------------------------

    def set_access_code(
        self,
        artifact_id: str,
        version: int,
        *,
        current: str | bytes | None,
        new: str | bytes | None,
    ) -> bool:
        """Set, change (``current`` → ``new``) or remove (``new=None``) a version's access code.

        Only the key slot is rewritten (atomically, under the shared lock, so never during a
        rotation); the payload is untouched. Forbidden if the version has a code and ``current`` is
        not it. Returns whether the version now requires a code.
        """
        if new is not None:
            kdf.normalize_code(new)
        path = self._key_path(self._dir(artifact_id), _check_version(version))
        with self.keyring.locked(exclusive=False):
            self.keyring.refresh()
            try:
                slot = env.KeySlot.decode(path.read_bytes())
            except FileNotFoundError:
                raise NotFound(f"artifact {artifact_id!r} version {version} not found") from None
            try:
                if slot.artifact != artifact_id or slot.version != version:
                    raise IntegrityError("key slot belongs to another artifact or version")
                key = env.open_key(self.keyring, slot, current if slot.access is not None else None)
            except IntegrityError as exc:
                raise _named(exc, artifact_id, version) from None
            fresh = env.seal_key(
                self.keyring,
                key,
                artifact=artifact_id,
                version=version,
                binding=slot.binding,
                access_code=new,
                kdf_params=self.kdf_params,
            )
            _fs.atomic_write(path, fresh.encode())
        return new is not None
