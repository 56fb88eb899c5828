"""Cryptographic building blocks. Imports nothing of Bastion's but ``bastion.errors``."""

from bastion.crypto.kdf import KdfParams
from bastion.crypto.keyring import KeyRing, WrappedKey

__all__ = ["KdfParams", "KeyRing", "WrappedKey"]
