"""Decoder key generation: DKGA02 and DKGA04 (docs/sts-protocol.md §8).

DKGA01 and DKGA03 are legacy and the public sources disagree on them (§8.4): not implemented.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from array import array
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from Crypto.Cipher import DES

from ._ciphers import EA07, EA09, EA11, normalise_ea
from ._errors import InvalidKey, InvalidParameter, UnknownAlgorithm
from ._ident import IIN_11_DIGIT, normalise_base_date, validate_pan

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DecoderKeyRequest",
    "check_krn",
    "check_kt",
    "check_sgc",
    "check_ti",
    "clear_key_caches",
    "derive_decoder_key",
    "derive_decoder_keys",
    "normalise_dkga",
]


def normalise_dkga(dkga: str | int) -> str:
    if dkga in ("02", "04"):  # fast path: the usual spelling
        return dkga
    text = str(dkga).strip()
    if text.isascii() and text.isdigit() and len(text) <= 2:
        code = f"{int(text):02d}"
        if code in ("02", "04"):
            return code
    raise UnknownAlgorithm(f"unsupported key generation algorithm DKGA{dkga!r}; supported: 02, 04")


def check_sgc(sgc: str | int) -> str:
    """Supply group code: 6 decimal digits (an int is zero-padded)."""
    if type(sgc) is str and len(sgc) == 6 and sgc.isascii() and sgc.isdigit():
        return sgc
    text = f"{sgc:06d}" if isinstance(sgc, int) and not isinstance(sgc, bool) else str(sgc).strip()
    if len(text) != 6 or not text.isascii() or not text.isdigit():
        raise InvalidParameter(f"SGC must be 6 decimal digits, got {sgc!r}")
    return text


def check_ti(ti: int | str) -> int:
    """Tariff index: two decimal digits 00..99 (``"01"`` or ``1``)."""
    try:
        value = int(ti)
    except (TypeError, ValueError):
        raise InvalidParameter(f"TI must be 00..99, got {ti!r}") from None
    if not 0 <= value <= 99 or isinstance(ti, bool):
        raise InvalidParameter(f"TI must be 00..99, got {ti!r}")
    return value


def check_krn(krn: int) -> int:
    """Key revision number: one digit 1..9 (§2)."""
    if not isinstance(krn, int) or isinstance(krn, bool) or not 1 <= krn <= 9:
        raise InvalidParameter(f"KRN must be 1..9, got {krn!r}")
    return krn


def check_kt(kt: int) -> int:
    """Key type 0..3 (DITK, DDTK, DUTK, DCTK)."""
    if not isinstance(kt, int) or isinstance(kt, bool) or not 0 <= kt <= 3:
        raise InvalidParameter(f"KT must be 0..3, got {kt!r}")
    return kt


@lru_cache(maxsize=32)
def _des_for_vending_key(vending_key: bytes) -> Any:  # pycryptodome exports no public cipher type
    # Creating a DES object costs ~5 us, more than the encryption itself. A batch re-keys
    # thousands of meters under the same vending key, so keep a few ECB objects (stateless,
    # so sharing them is safe). clear_key_caches() drops them, e.g. after a key is retired.
    return DES.new(vending_key, DES.MODE_ECB)


def clear_key_caches() -> None:
    """Forget cached vending-key cipher objects."""
    _des_for_vending_key.cache_clear()


#: TI 00..99 as two BCD nibbles: the CONTROLBlock carries the decimal digits as hex digits.
_TI_BCD = tuple(int(f"{ti:02d}", 16) for ti in range(100))


def _dkga02_x(pan: str, sgc: str, ti: int, krn: int, kt: int) -> int:
    """X = PANBlock xor CONTROLBlock (§8.1); DKGA02 then encrypts X under the VK."""
    # PANBlock: PAN digits 1..16 as hex nibbles; for KT 3 (common key) the DRN digits are zeros
    # (§8.1, two sources agree, no vector: U).
    pan_digits = pan[1:17]
    if kt == 3:
        iin_len = 5 if pan.startswith(IIN_11_DIGIT) else 3
        pan_digits = pan_digits[:iin_len] + "0" * (16 - iin_len)
    # CONTROLBlock, as hex digits: KT | SGC (6 decimal digits) | TI (2) | KRN | FFFFFF. Built with
    # shifts rather than an f-string parsed back (half the cost; this runs twice per meter).
    control = kt << 60 | int(sgc, 16) << 36 | _TI_BCD[ti] << 28 | krn << 24 | 0xFFFFFF
    return int(pan_digits, 16) ^ control


def _lv(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes((len(raw),)) + raw


def _dkga04(vending_key: bytes, pan: str, sgc: str, ti: int, krn: int, kt: int, base_code: str, ea: str) -> bytes:
    # One HMAC-SHA-256 over Label(4 items) 0x00 Context(4 items) L (§8.3); the item
    # counts 0x04 are what makes the STS531 vectors reproduce.
    bits = 128 if ea == EA11 else 64
    message = b"".join(
        (
            b"\x04", _lv("04"), _lv(base_code), _lv(ea), _lv(f"{ti:02d}"),
            b"\x00",
            b"\x04", _lv(sgc), _lv(f"{kt:X}"), _lv(f"{krn:X}"), _lv(pan),
            bits.to_bytes(4, "big"),
        )
    )  # fmt: skip
    return hmac.digest(vending_key, message, hashlib.sha256)[: bits // 8]


def _prepare(
    dkga: str,
    vending_key: bytes,
    pan: str,
    sgc: str,
    ti: int,
    krn: int,
    kt: int,
    base_date: int,
    ea: str,
    *,
    pan_checked: bool = False,
) -> tuple[str, bytes, int | bytes]:
    """Validate the inputs; return ("02", VK, X) for DKGA02 (DES still to do) or ("04", VK, key)."""
    code = normalise_dkga(dkga)
    ea_code = normalise_ea(ea)
    if type(vending_key) is not bytes:
        if not isinstance(vending_key, bytes | bytearray):
            raise InvalidKey(f"vending key must be bytes, got {type(vending_key).__name__}")
        vending_key = bytes(vending_key)
    if not pan_checked:
        pan = validate_pan(pan)
    sgc = check_sgc(sgc)
    # The usual plain ints are accepted inline; anything else goes through the checker, which
    # normalises it or raises the precise error. (Each call costs ~0.1 us; this runs per key.)
    if type(ti) is not int or not 0 <= ti <= 99:
        ti = check_ti(ti)
    if type(krn) is not int or not 1 <= krn <= 9:
        krn = check_krn(krn)
    if type(kt) is not int or not 0 <= kt <= 3:
        kt = check_kt(kt)
    bd = normalise_base_date(base_date)
    if code == "02":
        if ea_code not in (EA07, EA09):
            raise UnknownAlgorithm(f"DKGA02 makes 64-bit keys; EA{ea_code} needs DKGA04")
        if len(vending_key) != 8:
            raise InvalidKey(f"DKGA02 needs a 64-bit vending key, got {len(vending_key)} bytes")
        return code, vending_key, _dkga02_x(pan, sgc, ti, krn, kt)
    if ea_code == EA09:
        raise UnknownAlgorithm("DKGA04 with EA09 is not described by any public source")
    if len(vending_key) < 8:
        raise InvalidKey(f"DKGA04 vending key is too short ({len(vending_key)} bytes; STS uses 20)")
    return code, vending_key, _dkga04(vending_key, pan, sgc, ti, krn, kt, bd.code, ea_code)


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
    """Derive a meter's decoder key (big-endian bytes).

    * DKGA02 (§8.2): ``DES_VK(PANBlock ^ CONTROLBlock) ^ (PANBlock ^ CONTROLBlock) ^ VK``;
      VK must be 8 bytes; produces a 64-bit key for EA07 or EA09. ``base_date`` is not an input.
    * DKGA04 (§8.3): HMAC-SHA-256 KDF; 8 bytes for EA07, 16 bytes for EA11; the base
      date is an input. EA09 is refused with DKGA04 (no source describes that combination).

    ``pan`` is the 18-digit PAN (see :func:`pan_from_meter_number`), ``sgc`` 6 digits, ``ti`` 0..99,
    ``krn`` 1..9, ``kt`` 0..3.
    """
    code, vk, prepared = _prepare(dkga, vending_key, pan, sgc, ti, krn, kt, base_date, ea)
    if code == "04":
        return prepared  # type: ignore[return-value]
    x: int = prepared  # type: ignore[assignment]
    des_x = int.from_bytes(_des_for_vending_key(vk).encrypt(x.to_bytes(8, "big")), "big")
    # DK = DES_VK(X) xor X xor VK (§8.2)
    return (des_x ^ x ^ int.from_bytes(vk, "big")).to_bytes(8, "big")


class DecoderKeyRequest(NamedTuple):
    """The inputs of one :func:`derive_decoder_key` call, for :func:`derive_decoder_keys`.

    A NamedTuple (immutable, cheap to create in bulk). Its repr shows the vending key: never log it.
    """

    dkga: str
    vending_key: bytes
    pan: str
    sgc: str
    ti: int
    krn: int
    kt: int
    base_date: int = 1993
    ea: str = "07"


def derive_decoder_keys(requests: Sequence[DecoderKeyRequest]) -> list[bytes]:
    """:func:`derive_decoder_key` for many meters; same results, in order.

    DKGA02 requests that share a vending key go through ONE DES-ECB call over all their blocks
    (the per-call overhead of pycryptodome is larger than the DES work itself).
    """
    results: list[bytes | None] = [None] * len(requests)
    pending: dict[bytes, list[tuple[int, int]]] = {}
    valid_pans: set[str] = set()  # a rollover derives two keys per PAN: validate it once
    for index, req in enumerate(requests):
        pan = req.pan
        if pan not in valid_pans:
            validate_pan(pan)
            valid_pans.add(pan)
        code, vk, prepared = _prepare(
            req.dkga, req.vending_key, pan, req.sgc, req.ti, req.krn, req.kt, req.base_date, req.ea, pan_checked=True
        )
        if code == "04":
            results[index] = prepared  # type: ignore[assignment]
        else:
            pending.setdefault(vk, []).append((index, prepared))  # type: ignore[arg-type]
    for vk, items in pending.items():
        xs = [x for _, x in items]
        data = array("Q", xs)
        if sys.byteorder == "little":
            data.byteswap()  # DES works on big-endian blocks
        out = array("Q", _des_for_vending_key(vk).encrypt(data.tobytes()))
        if sys.byteorder == "little":
            out.byteswap()
        vk_int = int.from_bytes(vk, "big")
        for (index, x), des_x in zip(items, out, strict=True):
            results[index] = (des_x ^ x ^ vk_int).to_bytes(8, "big")
    return results  # type: ignore[return-value]
