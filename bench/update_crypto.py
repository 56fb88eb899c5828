"""Sealing and opening a 100 MB model update: Bastion against raw AES-GCM and the seeds' scheme.

Measured in the same run; every variant runs once per turn, ``--repeat`` turns, fastest kept:

* raw AES-256-GCM encrypt + decrypt of the payload bytes (the floor: no key exchange, no signature);
* Bastion's crypto layer on the same bytes: ``seal_payload`` (ephemeral X25519 + HKDF + AES-256-GCM,
  Ed25519 over the header and a BLAKE3 digest of the ciphertext, envelope v3) and ``verify_and_open``;
  ``seal_payload_parts`` is the same without joining the message into one buffer (a streamed upload);
* the seeds/001 scheme (pickle + AES-256-CBC/PKCS7 + RSA-2048-OAEP key wrap, pickled package), which
  has no signature and no integrity check, on the same bytes and end to end on the tensors;
* Bastion end to end on the tensors: safetensors encode + seal + sign, then verify + open + decode +
  validate (names, shapes, finiteness).

Usage::

    .venv/bin/python bench/update_crypto.py            # 100 MB
    .venv/bin/python bench/update_crypto.py --quick    # 10 MB
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bastion.crypto import sealed, signing
from bastion.federation import envelope
from bastion.federation.tensors import TensorSpec, encode

MB = 1024 * 1024


def _oaep() -> OAEP:
    return OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def seeds_encrypt(data: Any, public_key: rsa.RSAPublicKey) -> bytes:
    """seeds/001 "Encryption Details", steps 1-4, verbatim in substance."""
    pickled_data = pickle.dumps({"client_id": "client_123", "weights": data, "samples": 100})
    aes_key, iv = os.urandom(32), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(pickled_data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    encrypted_data = encryptor.update(padded) + encryptor.finalize()
    encrypted_key = public_key.encrypt(aes_key, _oaep())
    return pickle.dumps({"key": encrypted_key, "iv": iv, "data": encrypted_data})


def seeds_decrypt(payload: bytes, private_key: rsa.RSAPrivateKey) -> Any:
    """seeds/001 step 5. pickle.loads on received bytes: exactly what Bastion must never do."""
    package = pickle.loads(payload)
    aes_key = private_key.decrypt(package["key"], _oaep())
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(package["iv"])).decryptor()
    padded = decryptor.update(package["data"]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return pickle.loads(unpadder.update(padded) + unpadder.finalize())["weights"]


def interleaved_best(ops: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Fastest of ``repeat`` runs of each op, the ops taken in turn so that all see the same load."""
    best = dict.fromkeys(ops, float("inf"))
    for _ in range(repeat):
        for name, fn in ops.items():
            t0 = time.perf_counter()
            result = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            del result
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="10 MB instead of 100 MB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    size = (10 if args.quick else args.size_mb) * MB

    rng = np.random.default_rng(0)
    floats = size // 4
    cuts = [floats // 2, floats // 4, floats // 8]
    shapes = [*cuts, floats - sum(cuts)]
    tensors = {f"layer{i}.weight": rng.standard_normal(n, dtype=np.float32) for i, n in enumerate(shapes)}
    weights = list(tensors.values())
    payload = encode(tensors)
    spec = TensorSpec.from_tensors(tensors)

    server = sealed.generate_private_key()
    site = signing.generate_signing_key()
    participants = {"site-a": site.public_key()}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def header(rnd: int) -> envelope.UpdateHeader:
        return envelope.UpdateHeader(
            federation_id="bench",
            round=rnd,
            participant_id="site-a",
            nonce=envelope.new_nonce(),
            num_samples=1000,
            metrics={},
        )

    key, nonce = AESGCM.generate_key(256), os.urandom(12)
    raw_ct = AESGCM(key).encrypt(nonce, payload, None)
    message = envelope.seal_payload(
        payload, header(0), server_public_key=server.public_key(), signing_key=site
    )
    e2e_message = envelope.seal_update(
        tensors,
        federation_id="bench",
        round=0,
        participant_id="site-a",
        num_samples=1000,
        server_public_key=server.public_key(),
        signing_key=site,
    )
    seeds_bytes_msg = seeds_encrypt(payload, rsa_key.public_key())
    seeds_msg = seeds_encrypt(weights, rsa_key.public_key())

    def b_open_e2e() -> dict[str, np.ndarray]:
        return envelope.open_update(
            e2e_message,
            server_key=server,
            federation_id="bench",
            round=0,
            participants=participants,
            spec=spec,
            replay_guard=envelope.InMemoryReplayGuard(),  # fresh: the same message is re-opened
        ).tensors

    ops: dict[str, Callable[[], Any]] = {
        "raw_enc": lambda: AESGCM(key).encrypt(nonce, payload, None),
        "raw_dec": lambda: AESGCM(key).decrypt(nonce, raw_ct, None),
        "b_seal": lambda: envelope.seal_payload(
            payload, header(0), server_public_key=server.public_key(), signing_key=site
        ),
        "b_seal_parts": lambda: envelope.seal_payload_parts(
            payload, header(0), server_public_key=server.public_key(), signing_key=site
        ),
        "b_open": lambda: envelope.verify_and_open(
            message, server_key=server, federation_id="bench", round=0, participants=participants
        )[1],
        "b_seal_e2e": lambda: envelope.seal_update(
            tensors,
            federation_id="bench",
            round=0,
            participant_id="site-a",
            num_samples=1000,
            server_public_key=server.public_key(),
            signing_key=site,
        ),
        "b_open_e2e": b_open_e2e,
        "s_enc_bytes": lambda: seeds_encrypt(payload, rsa_key.public_key()),
        "s_dec_bytes": lambda: seeds_decrypt(seeds_bytes_msg, rsa_key),
        "s_enc": lambda: seeds_encrypt(weights, rsa_key.public_key()),
        "s_dec": lambda: seeds_decrypt(seeds_msg, rsa_key),
    }
    # Correctness first: every path gives back exactly what went in.
    assert ops["raw_dec"]() == payload and ops["b_open"]() == payload and ops["s_dec_bytes"]() == payload
    assert all(np.array_equal(b_open_e2e()[k], v) for k, v in tensors.items())
    assert all(np.array_equal(a, b) for a, b in zip(ops["s_dec"](), weights, strict=True))
    t = interleaved_best(ops, args.repeat)
    t_raw_enc, t_raw_dec, t_b_seal, t_b_open = t["raw_enc"], t["raw_dec"], t["b_seal"], t["b_open"]
    t_b_seal_e2e, t_b_open_e2e, t_s_enc, t_s_dec = t["b_seal_e2e"], t["b_open_e2e"], t["s_enc"], t["s_dec"]
    t_s_enc_bytes, t_s_dec_bytes = t["s_enc_bytes"], t["s_dec_bytes"]

    raw = t_raw_enc + t_raw_dec
    bastion = t_b_seal + t_b_open
    print(f"update_crypto_throughput_vs_raw_aesgcm: {raw / bastion:.2f}")
    print(f"update_crypto_seal_sign_vs_raw_encrypt: {t_raw_enc / t_b_seal:.2f}")
    print(f"update_crypto_seal_sign_parts_vs_raw_encrypt: {t_raw_enc / t['b_seal_parts']:.2f}")
    print(f"update_crypto_verify_open_vs_raw_decrypt: {t_raw_dec / t_b_open:.2f}")
    print(
        f"update_crypto_throughput_vs_raw_aesgcm_streamed_parts: {raw / (t['b_seal_parts'] + t_b_open):.2f}"
    )
    print(f"update_crypto_speedup_vs_seeds_scheme_bytes: {(t_s_enc_bytes + t_s_dec_bytes) / bastion:.2f}")
    print(
        f"update_crypto_speedup_vs_seeds_scheme_end_to_end: {(t_s_enc + t_s_dec) / (t_b_seal_e2e + t_b_open_e2e):.2f}"
    )
    print()
    mb = size / MB
    print(
        f"update of {mb:.0f} MiB ({floats:,} float32), best of {args.repeat}; message overhead "
        f"{len(message) - len(payload)} bytes"
    )

    def row(label: str, seal_s: float, open_s: float) -> None:
        print(
            f"  {label:<44} seal {1e3 * seal_s:8.1f} ms ({mb / seal_s:6.0f} MiB/s)"
            f"   open {1e3 * open_s:8.1f} ms ({mb / open_s:6.0f} MiB/s)"
        )

    row("raw AES-256-GCM (bytes)", t_raw_enc, t_raw_dec)
    row("bastion seal+sign / verify+open (bytes)", t_b_seal, t_b_open)
    row("bastion, sealed as parts for a streamed upload", t["b_seal_parts"], t_b_open)
    row("seeds pickle+CBC+RSA (bytes)", t_s_enc_bytes, t_s_dec_bytes)
    row("bastion end to end (tensors, validated)", t_b_seal_e2e, t_b_open_e2e)
    row("seeds end to end (pickled weights)", t_s_enc, t_s_dec)


if __name__ == "__main__":
    main()
