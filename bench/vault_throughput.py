"""Vault throughput: write+encrypt and read+decrypt of one large artifact, against baselines in the same run.

Baselines, over the same bytes:
- raw AES-256-GCM: the same 1 MiB chunks sealed with a counter nonce and written to a plain file
  (fsynced), then read back and opened. Same disk, same chunking, none of the vault's format, hashing,
  key wrapping or atomic publishing. This is what the ``*_vs_raw_gcm`` ratios divide by; the goal
  is >= 0.5. Crypto-only (no disk) figures are printed too.
- seeds/002: the whole object pickled, Fernet-encrypted (AES-128-CBC + HMAC, base64) and written;
  read back, decrypted, unpickled. pickle is fine here: this is a baseline, fed its own bytes.

Ratios are throughput(vault) / throughput(baseline), so higher is better for the vault. Each phase
also reports its peak RSS growth (goal for the vault: under 64 MiB).

    .venv/bin/python bench/vault_throughput.py              # 1 GiB, as the issue asks
    .venv/bin/python bench/vault_throughput.py --size-mib 64 --repeat 1   # quick run
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.vault import VaultStore
from bastion.vault.envelope import FORMAT_SHA256

MIB = 1024 * 1024
CHUNK = MIB


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """Peak RSS growth over a block: resets the kernel's high-water mark, or samples if it cannot."""

    def __init__(self) -> None:
        self.growth_mib = 0.0
        self._stop = threading.Event()
        self._peak = 0

    def _reset_hwm(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _status_kib("VmRSS"))

    def __enter__(self) -> PeakRss:
        self._start = _status_kib("VmRSS")
        self._peak = self._start
        self._kernel = self._reset_hwm()
        self._thread = None
        if not self._kernel:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._kernel:
            self._peak = _status_kib("VmHWM")
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
        self.growth_mib = max(0, self._peak - self._start) / 1024


@dataclass
class Result:
    name: str
    seconds: float
    rss_mib: float
    size: int

    @property
    def mib_s(self) -> float:
        return self.size / MIB / self.seconds


def measure(name: str, size: int, repeat: int, fn: Callable[[], object]) -> Result:
    """Best time of ``repeat`` runs, and the worst peak RSS growth among them."""
    runs = []
    for _ in range(repeat):
        with PeakRss() as rss:
            t0 = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - t0, rss))
    return Result(name, min(t for t, _ in runs), max(r.growth_mib for _, r in runs), size)


def chunks(pool: list[bytes], size: int) -> Iterator[bytes]:
    for i in range(size // CHUNK):
        yield pool[i % len(pool)]
    tail = size % CHUNK
    if tail:
        yield pool[0][:tail]


def gcm_write(path: Path, key: bytes, pool: list[bytes], size: int) -> None:
    aead = AESGCM(key)
    with open(path, "wb") as f:
        for i, chunk in enumerate(chunks(pool, size)):
            f.write(aead.encrypt(i.to_bytes(12, "big"), chunk, None))
        f.flush()
        os.fsync(f.fileno())


def gcm_read(path: Path, key: bytes) -> int:
    aead = AESGCM(key)
    n = 0
    with open(path, "rb") as f:
        i = 0
        while block := f.read(CHUNK + 16):
            n += len(aead.decrypt(i.to_bytes(12, "big"), block, None))
            i += 1
    return n


def gcm_memory(key: bytes, pool: list[bytes], size: int, decrypt: bool) -> None:
    aead = AESGCM(key)
    sealed = [aead.encrypt(i.to_bytes(12, "big"), p, None) for i, p in enumerate(pool)]
    for i in range(-(-size // CHUNK)):
        j = i % len(pool)
        if decrypt:
            aead.decrypt(j.to_bytes(12, "big"), sealed[j], None)
        else:
            aead.encrypt(i.to_bytes(12, "big"), pool[j], None)


def fernet_write(path: Path, fernet: Fernet, obj: object) -> None:
    token = fernet.encrypt(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    with open(path, "wb") as f:
        f.write(token)
        f.flush()
        os.fsync(f.fileno())


def fernet_read(path: Path, fernet: Fernet) -> object:
    return pickle.loads(fernet.decrypt(path.read_bytes()))


def drain(it: Iterator[bytes]) -> int:
    return sum(len(piece) for piece in it)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="artifact size (default 1024 = 1 GiB)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per phase, best time kept (default 2)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--skip-fernet", action="store_true", help="leave out the seeds/002 baseline")
    args = parser.parse_args()
    size = args.size_mib * MIB
    pool = [os.urandom(CHUNK) for _ in range(8)]
    key = AESGCM.generate_key(256)
    scratch = Path(tempfile.mkdtemp(prefix="vault-bench-", dir=args.dir))
    results: dict[str, Result] = {}
    try:
        store = VaultStore.open(scratch / "vault", os.urandom(32))
        raw_path = scratch / "raw.bin"
        results["raw_write"] = measure(
            "raw_gcm_write", size, args.repeat, lambda: gcm_write(raw_path, key, pool, size)
        )
        results["vault_write"] = measure(
            "vault_write", size, args.repeat, lambda: store.put_stream("bench", chunks(pool, size))
        )
        results["raw_read"] = measure("raw_gcm_read", size, args.repeat, lambda: gcm_read(raw_path, key))
        results["vault_read"] = measure(
            "vault_read", size, args.repeat, lambda: drain(store.open_stream("bench"))
        )
        results["vault_read_sha"] = measure(
            "vault_read_verified",
            size,
            args.repeat,
            lambda: drain(store.open_stream("bench", verify_digest=True)),
        )
        assert drain(store.open_stream("bench", verify_digest=True)) == size
        # The same bytes in vault format 1 (SHA-256 trailer): what a verified read cost before format 2.
        old = VaultStore(store.root, store.keyring, write_format=FORMAT_SHA256)
        old.put_stream("bench-v1", chunks(pool, size))
        results["vault_read_v1"] = measure(
            "vault_read_verified_fmt1",
            size,
            args.repeat,
            lambda: drain(old.open_stream("bench-v1", verify_digest=True)),
        )
        raw_path.unlink()
        shutil.rmtree(scratch / "vault")
        results["mem_enc"] = measure(
            "raw_gcm_encrypt_no_io", size, args.repeat, lambda: gcm_memory(key, pool, size, False)
        )
        results["mem_dec"] = measure(
            "raw_gcm_decrypt_no_io", size, args.repeat, lambda: gcm_memory(key, pool, size, True)
        )
        if not args.skip_fernet:
            fernet = Fernet(Fernet.generate_key())
            obj = {"name": "bench", "weights": b"".join(chunks(pool, size)), "metrics": {"acc": 0.9}}
            fpath = scratch / "model.pkl"
            results["fernet_write"] = measure(
                "fernet_pickle_write", size, 1, lambda: fernet_write(fpath, fernet, obj)
            )
            del obj
            results["fernet_read"] = measure(
                "fernet_pickle_read", size, 1, lambda: fernet_read(fpath, fernet)
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def ratio(a: str, b: str) -> str:
        return f"{results[a].mib_s / results[b].mib_s:.3f}"

    print(f"vault_write_vs_raw_gcm: {ratio('vault_write', 'raw_write')}")
    print(f"vault_read_vs_raw_gcm: {ratio('vault_read', 'raw_read')}")
    print(f"vault_read_verified_vs_raw_gcm: {ratio('vault_read_sha', 'raw_read')}")
    print(f"vault_read_verified_format1_sha256_vs_raw_gcm: {ratio('vault_read_v1', 'raw_read')}")
    print(f"vault_write_vs_raw_gcm_no_io: {ratio('vault_write', 'mem_enc')}")
    print(f"vault_read_vs_raw_gcm_no_io: {ratio('vault_read', 'mem_dec')}")
    if "fernet_write" in results:
        print(f"vault_write_vs_fernet_pickle: {ratio('vault_write', 'fernet_write')}")
        print(f"vault_read_vs_fernet_pickle: {ratio('vault_read_sha', 'fernet_read')}")
    print(
        f"vault_peak_rss_growth_mib: {max(results[k].rss_mib for k in ('vault_write', 'vault_read', 'vault_read_sha')):.1f}"
    )
    print()
    print(
        f"size: {size / MIB:.0f} MiB, chunk {CHUNK // 1024} KiB, best of {args.repeat}, "
        f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
        f"python {sys.version.split()[0]}"
    )
    print(f"{'phase':<26}{'seconds':>10}{'MiB/s':>10}{'peak RSS +MiB':>16}")
    for r in results.values():
        print(f"{r.name:<26}{r.seconds:>10.3f}{r.mib_s:>10.1f}{r.rss_mib:>16.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
