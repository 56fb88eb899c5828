"""Encrypted inference (CKKS through TenSEAL): the client holds the secret key; the server computes."""
