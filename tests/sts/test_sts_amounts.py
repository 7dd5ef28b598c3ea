"""Amount encoding (docs/sts-protocol.md §6): in the customer's favour, integers/Decimal only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokens.sts import (
    AmountOutOfRange,
    decode_amount,
    decode_currency_amount,
    decode_transfer_amount,
    encode_amount,
    encode_currency_amount,
    encode_transfer_amount,
)
from tokens.sts._amount import _MAX_CURRENCY_VALUE, MAX_TRANSFER_VALUE

# built from text: Decimal arithmetic would round these 36-digit values to 28 digits
_MAX_CURRENCY = Decimal(f"{_MAX_CURRENCY_VALUE}E-5")
kwh = st.decimals(min_value=0, max_value=Decimal("1820162.4"), places=3, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize(
    ("units", "field"),
    [
        ("0", 0x0000),
        ("0.01", 0x0001),  # 0.01 kWh rounds UP to 0.1 kWh
        ("0.1", 0x0001),
        ("1638.3", 0x3FFF),
        ("1638.4", 0x4000),
        ("2000.0", 0x416A),  # = 2000.4 kWh (docs/sts-protocol.md §6.1)
        ("18022.3", 0x8000),  # falls in the gap: next exponent, m = 0
        ("181862.3", 0xC000),
        ("1820162.4", 0xFFFF),
    ],
)
def test_boundaries(units: str, field: int) -> None:
    assert encode_amount(Decimal(units)) == field


@pytest.mark.parametrize("field", [0x0000, 0x3FFF, 0x4000, 0x8000, 0xC000, 0xFFFF])
def test_decode_is_exact_decimal(field: int) -> None:
    value = decode_amount(field)
    assert isinstance(value, Decimal)
    assert value == Decimal(decode_transfer_amount(field)) / 10


def test_largest_value() -> None:
    assert decode_transfer_amount(0xFFFF) == MAX_TRANSFER_VALUE == 18_201_624


@given(kwh)
def test_never_under_credits_and_is_the_smallest_such_field(units: Decimal) -> None:
    field = encode_amount(units)
    assert decode_amount(field) >= units
    # no representable value between the request and what we send: the next field down is short
    if field and (field & 0x3FFF):
        assert decode_amount(field - 1) < units


@given(kwh, kwh)
def test_encoding_is_monotone(a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert encode_amount(low) <= encode_amount(high)
    assert decode_amount(encode_amount(low)) <= decode_amount(encode_amount(high))


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_decode_encode_round_trip(field: int) -> None:
    # fields with m = 0 and e > 0 decode to the first value of their range; re-encoding a value
    # that the lower exponent can hold exactly gives the lower exponent, so compare values
    value = decode_transfer_amount(field)
    assert decode_transfer_amount(encode_transfer_amount(value)) == value


@pytest.mark.parametrize("bad", [Decimal("-0.1"), Decimal("1820162.5"), Decimal("1e9"), Decimal("NaN")])
def test_out_of_range_amounts(bad: Decimal) -> None:
    with pytest.raises(AmountOutOfRange):
        encode_amount(bad)


def test_floats_are_refused() -> None:
    with pytest.raises(AmountOutOfRange, match="float"):
        encode_amount(0.1)  # type: ignore[arg-type]


def test_fields_outside_16_bits_are_refused() -> None:
    with pytest.raises(AmountOutOfRange):
        decode_transfer_amount(0x10000)
    with pytest.raises(AmountOutOfRange):
        encode_transfer_amount(MAX_TRANSFER_VALUE + 1)


def test_currency_example() -> None:
    # docs/sts-protocol.md §6.2: 100.00 -> e = 3, m = 8182 -> 0xDFF6 with S&E nibble 0
    assert encode_currency_amount(Decimal("100.00")) == 0xDFF6
    assert decode_currency_amount(0xDFF6) >= Decimal(100)
    assert decode_currency_amount(1 << 19 | 5) == Decimal("-0.00005")


@given(st.decimals(min_value=0, max_value=Decimal("1e12"), places=5, allow_nan=False, allow_infinity=False))
def test_currency_never_under_credits(amount: Decimal) -> None:
    assert decode_currency_amount(encode_currency_amount(amount)) >= amount


# --- negative currency amounts (issue 13) -------------------------------------------------------

LARGEST_DEBIT = _MAX_CURRENCY.copy_negate()  # exact, unlike unary minus
debits = st.decimals(
    min_value=LARGEST_DEBIT, max_value=Decimal("-0.00001"), places=5, allow_nan=False, allow_infinity=False
)


def test_minus_one_is_the_smaller_debit_of_the_2025_compliance_test() -> None:
    # STS 531-1-07 Ed. 2.2 CTSA20 step 13 issues "Amount = -1" and expects -0.99994 (§6.2)
    field20 = encode_currency_amount(Decimal(-1))
    assert field20 == 1 << 19 | 1 << 14 | 8361  # sign, e = 1, m = 8361
    assert decode_currency_amount(field20) == Decimal("-0.99994")
    assert encode_currency_amount("-180224") == 1 << 19 | 6 << 14 | 16201  # -180214.42624, not -180224.42624


@given(debits)
def test_negative_amounts_round_toward_plus_infinity_to_the_nearest_debit(amount: Decimal) -> None:
    field20 = encode_currency_amount(amount)
    assert field20 >> 19 == 1  # the sign bit
    sent = decode_currency_amount(field20)
    assert amount <= sent < 0  # never a bigger debit than asked for
    # and no representable debit lies between: the next larger magnitude is already too big
    magnitude = field20 & 0x7FFFF
    if magnitude & 0x3FFF < 0x3FFF:
        assert decode_currency_amount(field20 + 1) < amount
    assert encode_currency_amount(sent) == field20  # canonical


@given(debits, debits)
def test_negative_encoding_is_monotone(a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert decode_currency_amount(encode_currency_amount(low)) <= decode_currency_amount(encode_currency_amount(high))


def test_debits_beyond_the_field_are_refused_not_clamped() -> None:
    with pytest.raises(AmountOutOfRange, match="too large"):
        encode_currency_amount(Decimal(f"-{_MAX_CURRENCY_VALUE + 1}E-5"))
    assert decode_currency_amount(encode_currency_amount(LARGEST_DEBIT)) == LARGEST_DEBIT


def test_a_debit_smaller_than_the_unit_rounds_to_zero() -> None:
    assert encode_currency_amount(Decimal("-0.000001")) == 0  # toward +infinity: no debit at all
