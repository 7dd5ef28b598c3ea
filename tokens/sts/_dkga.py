"""Decoder key generation (reference.md section 7). Work in progress."""

from __future__ import annotations


def derive_decoder_key(
    *,
    dkga: str,
    vending_key: bytes,
    pan: str,
    sgc: str,
    ti: int,
    krn: int,
    kt: int,
    base_date: int = 1993,
    ea: str = "07",
) -> bytes:
    """Derive a meter's decoder key with DKGA02 (DES) or DKGA04 (HMAC-SHA-256)."""
    raise NotImplementedError
