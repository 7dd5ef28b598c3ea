"""Wrong inputs are rejected with the right, specific exception."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tokens.sts import (
    AmountOutOfRange,
    CrcMismatch,
    InvalidKey,
    InvalidMeterNumber,
    InvalidParameter,
    InvalidTokenFormat,
    KeyExpired,
    SameKeyRollover,
    StsError,
    TidOutOfRange,
    UnknownAlgorithm,
    credit_token,
    decode_token,
    derive_decoder_key,
    format_token,
    key_change_tokens,
    management_token,
    pan_from_meter_number,
)

DK = bytes.fromhex("E653341F9D5BF36F")  # CTSA01 decoder key
TOKEN = "23716100501183194197"  # CTSA01 step 1 under DK


def test_every_error_is_a_value_error() -> None:
    for exc in (InvalidMeterNumber, InvalidTokenFormat, CrcMismatch, UnknownAlgorithm, InvalidKey):
        assert issubclass(exc, StsError)
    for exc in (AmountOutOfRange, TidOutOfRange, KeyExpired, InvalidParameter, SameKeyRollover):
        assert issubclass(exc, StsError)
    assert issubclass(StsError, ValueError)


@pytest.mark.parametrize(
    "digits",
    [
        TOKEN[:-1],  # 19 digits
        TOKEN + "0",  # 21 digits
        TOKEN[:10] + "O" + TOKEN[11:],  # letter O for zero
        "2371-6100-5011-8319-419x",
        "",
    ],
)
def test_malformed_tokens(digits: str) -> None:
    with pytest.raises(InvalidTokenFormat):
        decode_token(digits, ea="07", decoder_key=DK)


def test_value_at_or_above_2_pow_66() -> None:
    assert len(str(2**66)) == 20
    with pytest.raises(InvalidTokenFormat, match="2\\*\\*66"):
        decode_token(str(2**66), ea="07", decoder_key=DK)
    with pytest.raises(InvalidTokenFormat):
        decode_token("99999999999999999999", ea="07", decoder_key=DK)


def test_format_token() -> None:
    assert format_token(TOKEN) == "2371-6100-5011-8319-4197"
    assert format_token("2371 6100 5011 8319 4197") == "2371-6100-5011-8319-4197"
    with pytest.raises(InvalidTokenFormat):
        format_token(TOKEN[:-1])


def test_wrong_key_is_a_crc_mismatch() -> None:
    assert decode_token(TOKEN, ea="07", decoder_key=DK).tid == 5871715
    with pytest.raises(CrcMismatch):
        decode_token(TOKEN, ea="07", decoder_key=bytes.fromhex("E653341F9D5BF36E"))
    with pytest.raises(CrcMismatch):
        decode_token(TOKEN, ea="09", decoder_key=DK)  # wrong algorithm, right key


def test_every_single_digit_typo_is_detected() -> None:
    caught = 0
    for position in range(20):
        for digit in "0123456789":
            if digit == TOKEN[position]:
                continue
            typo = TOKEN[:position] + digit + TOKEN[position + 1 :]
            with pytest.raises((CrcMismatch, InvalidTokenFormat)):
                decode_token(typo, ea="07", decoder_key=DK)
            caught += 1
    assert caught == 180


def test_swapped_adjacent_digits_are_detected() -> None:
    for position in range(19):
        if TOKEN[position] == TOKEN[position + 1]:
            continue
        swapped = TOKEN[:position] + TOKEN[position + 1] + TOKEN[position] + TOKEN[position + 2 :]
        with pytest.raises((CrcMismatch, InvalidTokenFormat)):
            decode_token(swapped, ea="07", decoder_key=DK)


def test_encrypted_classes_need_a_key() -> None:
    with pytest.raises(InvalidKey):
        decode_token(TOKEN)


def test_bad_luhn_in_meter_number_and_pan() -> None:
    with pytest.raises(InvalidMeterNumber, match="Luhn"):
        pan_from_meter_number("47500150230")
    with pytest.raises(InvalidMeterNumber, match="Luhn"):
        derive_decoder_key(dkga="02", vending_key=bytes(8), pan="600727000000000008", sgc="123456", ti=1, krn=1, kt=2)


@pytest.mark.parametrize("ea", ["08", "12", "STA", "", "007"])
def test_unknown_ea(ea: str) -> None:
    with pytest.raises(UnknownAlgorithm):
        credit_token(ea=ea, decoder_key=DK, tid=5871715, amount_field=1, rnd=5)
    with pytest.raises(UnknownAlgorithm):
        decode_token(TOKEN, ea=ea, decoder_key=DK)


def test_unknown_dkga_and_bad_pairings() -> None:
    common = {"vending_key": bytes(8), "pan": "600727000000000009", "sgc": "123456", "ti": 1, "krn": 1, "kt": 2}
    with pytest.raises(UnknownAlgorithm):
        derive_decoder_key(dkga="01", **common)
    with pytest.raises(UnknownAlgorithm):
        derive_decoder_key(dkga="03", **common)
    with pytest.raises(UnknownAlgorithm):
        derive_decoder_key(dkga="02", ea="11", **common)  # DKGA02 cannot make 128-bit keys


def test_seven_byte_keys() -> None:
    seven = bytes(7)
    with pytest.raises(InvalidKey):
        credit_token(ea="07", decoder_key=seven, tid=5871715, amount_field=1)
    with pytest.raises(InvalidKey):
        decode_token(TOKEN, ea="07", decoder_key=seven)
    with pytest.raises(InvalidKey):
        key_change_tokens(ea="07", old_key=DK, new_key=seven, new_krn=2, new_kt=2, new_ti=1, rollover=True)
    with pytest.raises(InvalidKey):
        derive_decoder_key(dkga="02", vending_key=seven, pan="600727000000000009", sgc="123456", ti=1, krn=1, kt=2)
    with pytest.raises(InvalidKey):
        credit_token(ea="11", decoder_key=DK, tid=5871715, amount_field=1)  # 8 bytes for a 128-bit EA
    with pytest.raises(InvalidKey):
        credit_token(ea="07", decoder_key=DK.hex(), tid=5871715, amount_field=1)  # type: ignore[arg-type]


def test_amount_above_16_bit_range() -> None:
    with pytest.raises(AmountOutOfRange):
        credit_token(ea="07", decoder_key=DK, tid=5871715, amount_field=0x10000)
    with pytest.raises(AmountOutOfRange):
        credit_token(ea="07", decoder_key=DK, tid=5871715, units=Decimal("1820162.5"))
    with pytest.raises(AmountOutOfRange):
        management_token(ea="07", decoder_key=DK, subclass=0, tid=5871715, value=0x10000)
    with pytest.raises(AmountOutOfRange):
        credit_token(ea="07", decoder_key=DK, tid=5871715, amount_field=-1)


def test_tid_rules_on_building() -> None:
    with pytest.raises(TidOutOfRange):
        credit_token(ea="07", decoder_key=DK, tid=1 << 24, amount_field=1)
    with pytest.raises(TidOutOfRange):
        credit_token(ea="07", decoder_key=DK, tid=-1, amount_field=1)
    with pytest.raises(TidOutOfRange, match="reserved"):
        credit_token(ea="07", decoder_key=DK, tid=1440 * 4000 + 1, amount_field=1)
    with pytest.raises(KeyExpired):
        credit_token(ea="07", decoder_key=DK, tid=0x560000, amount_field=1, ken=0x55)
    assert credit_token(ea="07", decoder_key=DK, tid=0x55FFFF, amount_field=1, ken=0x55)


def test_parameter_errors() -> None:
    with pytest.raises(InvalidParameter):
        credit_token(ea="07", decoder_key=DK, tid=5871715, amount_field=1, rnd=16)
    with pytest.raises(InvalidParameter):
        credit_token(ea="07", decoder_key=DK, tid=5871715, amount_field=1, subclass=8)
    with pytest.raises(InvalidParameter):
        credit_token(ea="07", decoder_key=DK, tid=5871715)  # neither units nor amount_field
    with pytest.raises(InvalidParameter):
        credit_token(ea="07", decoder_key=DK, tid=5871715, units=Decimal(1), amount_field=10)
    with pytest.raises(InvalidParameter):
        management_token(ea="07", decoder_key=DK, subclass=3, tid=5871715, value=0)  # a KCT subclass
    with pytest.raises(InvalidParameter):
        key_change_tokens(ea="11", old_key=bytes(16), new_key=bytes(16), new_krn=2, new_kt=2, new_ti=1, rollover=True)
    with pytest.raises(InvalidParameter):
        key_change_tokens(ea="07", old_key=DK, new_key=DK, new_krn=10, new_kt=2, new_ti=1, rollover=True)
    with pytest.raises(InvalidParameter):
        key_change_tokens(ea="07", old_key=DK, new_key=DK, new_krn=2, new_kt=4, new_ti=1, rollover=True)
    with pytest.raises(InvalidParameter):
        key_change_tokens(ea="07", old_key=DK, new_key=DK, new_krn=2, new_kt=2, new_ti=100, rollover=True)


def _encrypted_token(token_class: int, subclass: int, data44: int, key: bytes = DK) -> str:
    """A well-formed token (valid CRC, transposition) with arbitrary fields, built by hand."""
    from tokens.sts._sta import StaCipher, tables_by_name
    from tokens.sts._tokens import _block, _transpose

    block = _block(token_class, subclass, data44)
    if token_class != 1:
        block = StaCipher(int.from_bytes(key, "big"), tables_by_name("production")).encrypt(block)
    return _transpose(block, token_class)


@pytest.mark.parametrize(
    ("token_class", "subclass", "data44", "match"),
    [
        (2, 9, 0x123_DEADBEEF, "64-bit-key KCT"),  # a 4th section exists only for 128-bit keys
        (2, 8, 123456 << 20 | 1, "64-bit-key KCT"),  # KCT3 of a 64-bit key ends in 20 zero bits
        (2, 11, 0, "reserved or proprietary"),
        (2, 15, 0, "reserved or proprietary"),
        (1, 3, 0, "reserved or proprietary"),
        (1, 6, 0, "reserved or proprietary"),
    ],
)
def test_tokens_no_genuine_source_builds_are_refused(token_class: int, subclass: int, data44: int, match: str) -> None:
    token = _encrypted_token(token_class, subclass, data44)
    with pytest.raises(InvalidTokenFormat, match=match):
        decode_token(token, ea="07", decoder_key=DK)


def test_subclass_8_reads_by_the_key_length() -> None:
    data44 = 0x123 << 32 | 0xDEADBEEF
    ea11_key = bytes(range(16))
    from tokens.sts._misty1 import Misty1Cipher
    from tokens.sts._tokens import _block, _transpose

    token = _transpose(Misty1Cipher(ea11_key).encrypt(_block(2, 8, data44)), 2)
    decoded = decode_token(token, ea="11", decoder_key=ea11_key)
    assert (decoded.sgc_part, decoded.nkmo, decoded.new_sgc) == (0x123, 0xDEADBEEF, None)
    decoded = decode_token(_encrypted_token(2, 8, 201457 << 20), ea="07", decoder_key=DK)
    assert (decoded.sgc_part, decoded.nkmo, decoded.new_sgc) == (None, None, 201457)


def test_same_key_rollover_error_comes_after_the_parameter_errors() -> None:
    # a caller with two mistakes hears about the malformed field first, then about the key
    with pytest.raises(InvalidParameter):
        key_change_tokens(ea="07", old_key=DK, new_key=DK, new_krn=0, new_kt=2, new_ti=1, rollover=True)
    with pytest.raises(SameKeyRollover):
        key_change_tokens(ea="07", old_key=DK, new_key=bytearray(DK), new_krn=2, new_kt=2, new_ti=1, rollover=True)
