"""Encryption algorithm (EA) codes and block cipher objects (docs/sts-protocol.md §7).

EA07 = STA (64-bit key), EA09 = DEA/DES (64-bit key, deprecated, no public vectors),
EA11 = MISTY1 (128-bit key). Blocks are 64-bit ints; keys are big-endian bytes.
"""

from __future__ import annotations

from typing import Protocol

from Crypto.Cipher import DES

from ._errors import InvalidKey, UnknownAlgorithm
from ._misty1 import Misty1Cipher
from ._sta import StaCipher, tables_by_name

__all__ = ["EA07", "EA09", "EA11", "BlockCipher", "check_key", "key_length", "make_cipher", "normalise_ea"]

EA07 = "07"
EA09 = "09"
EA11 = "11"
_KEY_LENGTHS = {EA07: 8, EA09: 8, EA11: 16}


_EA_ALIASES: dict[object, str] = {code: code for code in _KEY_LENGTHS}


class BlockCipher(Protocol):
    def encrypt(self, block: int) -> int: ...

    def decrypt(self, block: int) -> int: ...


def normalise_ea(ea: str | int) -> str:
    """``"07"``, ``"7"``, ``7`` -> ``"07"``; anything other than 07/09/11 -> :class:`UnknownAlgorithm`."""
    known = _EA_ALIASES.get(ea)  # fast path for the usual spellings
    if known is not None:
        return known
    text = str(ea).strip()
    if text.isascii() and text.isdigit() and len(text) <= 2:
        code = f"{int(text):02d}"
        if code in _KEY_LENGTHS:
            return code
    raise UnknownAlgorithm(f"unknown encryption algorithm EA{ea!r}; supported: 07 (STA), 09 (DEA), 11 (MISTY1)")


def key_length(ea: str) -> int:
    """Decoder key length in bytes for an EA: 8 for EA07/EA09, 16 for EA11."""
    return _KEY_LENGTHS[normalise_ea(ea)]


def check_key(ea: str, key: bytes, what: str = "decoder key") -> bytes:
    if type(key) is bytes and len(key) == _KEY_LENGTHS.get(ea):  # the usual case, once per token
        return key
    if type(key) is not bytes and not isinstance(key, bytes | bytearray):
        raise InvalidKey(f"{what} must be bytes, got {type(key).__name__}")
    expected = _KEY_LENGTHS.get(ea) or key_length(ea)  # ea is usually normalised already
    if len(key) != expected:
        raise InvalidKey(f"EA{normalise_ea(ea)} needs a {expected * 8}-bit {what}, got {len(key)} bytes")
    return bytes(key)


class _DesCipher:
    """EA09: single DES ECB of the block under the decoder key (§7.2)."""

    __slots__ = ("_des",)

    def __init__(self, key: bytes) -> None:
        self._des = DES.new(key, DES.MODE_ECB)

    def encrypt(self, block: int) -> int:
        return int.from_bytes(self._des.encrypt(block.to_bytes(8, "big")), "big")

    def decrypt(self, block: int) -> int:
        return int.from_bytes(self._des.decrypt(block.to_bytes(8, "big")), "big")


def make_cipher(ea: str, key: bytes, tables: str = "production") -> BlockCipher:
    """A cipher object for one decoder key; reuse it for several blocks under the same key."""
    code = normalise_ea(ea)
    key = check_key(code, key)
    if code == EA07:
        return StaCipher(int.from_bytes(key, "big"), tables_by_name(tables))
    if tables != "production":
        raise UnknownAlgorithm(f"STA table set {tables!r} only applies to EA07")
    if code == EA11:
        return Misty1Cipher(key)
    return _DesCipher(key)
