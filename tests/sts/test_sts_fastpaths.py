"""The speed-ups of the one-meter-at-a-time path (issue 3 target) give exactly the plain results.

Each fast path is checked against a slow, obviously-correct version: the table CRC against the
bit loop, the STA single/pair encryption against the reference transcription, the direct DES call
against pycryptodome's public method, and the inline argument checks against the checkers (same
accepted values, same exception types for everything else).
"""

from __future__ import annotations

import pytest
from Crypto.Cipher import DES
from hypothesis import given, settings
from hypothesis import strategies as st

from tokens.sts import (
    InvalidKey,
    InvalidMeterNumber,
    InvalidParameter,
    KeyExpired,
    TidOutOfRange,
    UnknownAlgorithm,
    clear_key_caches,
    credit_token,
    decode_token,
    derive_decoder_key,
    key_change_tokens,
)
from tokens.sts._crc import crc16_modbus, sts_crc_field
from tokens.sts._ident import luhn_check_digit, validate_pan
from tokens.sts._sta import PRODUCTION, SAMPLE, StaTables, reference_encrypt, sta_encrypt_blocks

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
u50 = st.integers(min_value=0, max_value=(1 << 50) - 1)
DK = bytes.fromhex("E653341F9D5BF36F")
VK = bytes.fromhex("ABABABABABABABAB")


def crc_field_by_bit_loop(first50: int, currency: bool) -> int:
    """Bit-at-a-time CRC-16/MODBUS over the 7 (or 8) bytes, byte-swapped (docs/sts-protocol.md §3.4)."""
    crc = 0xFFFF
    for byte in first50.to_bytes(7, "big") + (b"\x01" if currency else b""):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return (crc & 0xFF) << 8 | crc >> 8


@settings(max_examples=300)
@given(u50, st.booleans())
def test_table_crc_equals_bit_loop(first50: int, currency: bool) -> None:
    assert sts_crc_field(first50, currency) == crc_field_by_bit_loop(first50, currency)


@pytest.mark.parametrize("first50", [0, 1, (1 << 50) - 1, 0x2A << 44, 1 << 49])
def test_table_crc_edges(first50: int) -> None:
    for currency in (False, True):
        assert sts_crc_field(first50, currency) == crc_field_by_bit_loop(first50, currency)
    assert crc16_modbus(b"123456789") == 0x4B37


@settings(max_examples=60)
@given(u64, st.lists(u64, min_size=0, max_size=4), st.sampled_from([PRODUCTION, SAMPLE]))
def test_sta_blocks_equal_reference(key: int, blocks: list[int], tables: StaTables) -> None:
    # 2 blocks take the paired loop (the KCT pair), other counts the single-block loop
    expected = [reference_encrypt(block, key, tables) for block in blocks]
    assert sta_encrypt_blocks(key.to_bytes(8, "big"), blocks, tables) == expected


def test_sta_pair_with_equal_and_extreme_blocks() -> None:
    top = (1 << 64) - 1
    for key in (0, top, 0x0123456789ABCDEF):
        for pair in ([0, top], [top, top], [5, 5]):
            assert sta_encrypt_blocks(key.to_bytes(8, "big"), pair) == [reference_encrypt(b, key) for b in pair]


def test_derive_survives_cache_clearing() -> None:
    args = {"dkga": "02", "vending_key": VK, "pan": "600727000000000009", "sgc": "123456", "ti": 1, "krn": 1, "kt": 2}
    first = derive_decoder_key(**args)
    clear_key_caches()
    assert derive_decoder_key(**args) == first
    # DK = DES_VK(X) xor X xor VK, with X built independently from the text of docs/sts-protocol.md §8.1
    x = int("0072700000000000", 16) ^ int("2123456011FFFFFF", 16)
    des_x = int.from_bytes(DES.new(VK, DES.MODE_ECB).encrypt(x.to_bytes(8, "big")), "big")
    assert first == (des_x ^ x ^ int.from_bytes(VK, "big")).to_bytes(8, "big")


def test_pan_luhn_matches_check_digit_function() -> None:
    for body in ("60072747100000001", "60072700000000000", "00001234567890123"):
        good = body + str(luhn_check_digit(body))
        assert validate_pan(good) == good
        for digit in "0123456789":
            if body + digit != good:
                with pytest.raises(InvalidMeterNumber, match="Luhn"):
                    validate_pan(body + digit)


def test_inline_checks_accept_what_the_checkers_accept() -> None:
    base = {"ea": "07", "old_key": DK, "new_key": bytes(reversed(DK)), "rollover": True}
    # strings and edge values still go through the full checkers
    assert key_change_tokens(**base, new_krn=9, new_kt=3, new_ti="99") == key_change_tokens(
        **base, new_krn=9, new_kt=3, new_ti=99
    )
    assert key_change_tokens(**base, new_krn=1, new_kt=0, new_ti=0, new_ken=0)
    token = credit_token(ea="07", decoder_key=bytearray(DK), tid=5871715, amount_field=1, rnd=15, subclass=3)
    assert token == credit_token(ea=7, decoder_key=DK, tid=5871715, amount_field=1, rnd=15, subclass=3)
    assert decode_token(token, ea="07", decoder_key=DK).rnd == 15


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"new_krn": True}, InvalidParameter),
        ({"new_krn": 0}, InvalidParameter),
        ({"new_kt": False}, InvalidParameter),
        ({"new_ti": -1}, InvalidParameter),
        ({"new_ken": 256}, InvalidParameter),
        ({"new_ken": 2.0}, InvalidParameter),
        ({"new_key": DK.hex()}, InvalidKey),
    ],
)
def test_inline_key_change_checks_keep_precise_errors(kwargs: dict, error: type[Exception]) -> None:
    args = {"ea": "07", "old_key": DK, "new_key": DK, "new_krn": 2, "new_kt": 2, "new_ti": 1, "rollover": True}
    with pytest.raises(error):
        key_change_tokens(**(args | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tid": True}, TidOutOfRange),
        ({"tid": 5871715.0}, TidOutOfRange),
        ({"tid": 1440 + 1}, TidOutOfRange),
        ({"tid": 0x560000, "ken": 0x55}, KeyExpired),
        ({"ken": -1}, InvalidParameter),
        ({"rnd": True}, InvalidParameter),
        ({"rnd": -1}, InvalidParameter),
        ({"subclass": True}, InvalidParameter),
        ({"subclass": 8}, InvalidParameter),
        ({"tables": "nope"}, UnknownAlgorithm),
    ],
)
def test_inline_credit_checks_keep_precise_errors(kwargs: dict, error: type[Exception]) -> None:
    args = {"ea": "07", "decoder_key": DK, "tid": 5871715, "amount_field": 1, "rnd": 5}
    with pytest.raises(error):
        credit_token(**(args | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"ti": True}, InvalidParameter),
        ({"ti": 100}, InvalidParameter),
        ({"krn": 10}, InvalidParameter),
        ({"kt": 4}, InvalidParameter),
        ({"kt": True}, InvalidParameter),
        ({"vending_key": "ABABABABABABABAB"}, InvalidKey),
        ({"base_date": 2000}, InvalidParameter),
    ],
)
def test_inline_derive_checks_keep_precise_errors(kwargs: dict, error: type[Exception]) -> None:
    args = {"dkga": "02", "vending_key": VK, "pan": "600727000000000009", "sgc": "123456", "ti": 1, "krn": 1, "kt": 2}
    with pytest.raises(error):
        derive_decoder_key(**(args | kwargs))
