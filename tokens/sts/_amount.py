"""Amount encoding (docs/sts-protocol.md §6): integers and Decimal only, never float.

16-bit TransferAmount: ``e(2) | m(14)``, value = m*10**e + sum(2**14 * 10**(n-1), n=1..e).
Every conversion rounds in the customer's favour (IEC 62055-41 6.3.6.2): credits and limits up,
the magnitude of a (negative) currency debit down.
"""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation

from ._errors import AmountOutOfRange

__all__ = [
    "CURRENCY_SCALE",
    "MAX_TRANSFER_VALUE",
    "decode_amount",
    "decode_currency_amount",
    "decode_transfer_amount",
    "encode_amount",
    "encode_currency_amount",
    "encode_transfer_amount",
]

_MANTISSA_MAX = (1 << 14) - 1
# Moving the decimal point must never round: the default 28-digit context would, for currency
# amounts near the top of the 20-bit field (36 digits in 10**-5 units).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _offset(exponent: int) -> int:
    """sum(2**14 * 10**(n-1) for n in 1..exponent): the value at mantissa 0 of that exponent."""
    return sum((1 << 14) * 10 ** (n - 1) for n in range(1, exponent + 1))


def _value(exponent: int, mantissa: int) -> int:
    return mantissa * int(10**exponent) + _offset(exponent)


#: Largest value a 16-bit TransferAmount can carry (field 0xFFFF), in field units.
MAX_TRANSFER_VALUE = _value(3, _MANTISSA_MAX)
#: Currency amounts are counted in 10**-5 of the base currency (docs/sts-protocol.md §6.2).
CURRENCY_SCALE = 10**5
_CURRENCY_DECIMALS = 5
_MAX_CURRENCY_VALUE = _value(31, _MANTISSA_MAX)


def _encode(value: int, max_exponent: int) -> tuple[int, int]:
    """Smallest exponent whose mantissa fits, mantissa rounded up (gaps go to m=0 of the next e)."""
    for exponent in range(max_exponent + 1):
        offset = _offset(exponent)
        scale = 10**exponent
        mantissa = max(0, -((offset - value) // scale))  # ceil((value - offset) / scale)
        if value <= offset + mantissa * scale and mantissa <= _MANTISSA_MAX:
            return exponent, mantissa
    raise AmountOutOfRange(f"value {value} is too large for the amount field")


def _encode_down(value: int, max_exponent: int) -> tuple[int, int]:
    """The largest representable value <= ``value``: used for the magnitude of a debit.

    The exponent ranges do not overlap and each ends below the next one's start, so the largest
    exponent whose range starts at or below ``value`` holds the answer, and its mantissa
    (rounded down) always fits in 14 bits.
    """
    exponent = max(e for e in range(max_exponent + 1) if _offset(e) <= value)
    return exponent, (value - _offset(exponent)) // 10**exponent


def encode_transfer_amount(value: int) -> int:
    """Encode an integer value in field units (0.1 kWh, 0.1 m3, or watts for power limits).

    Returns the 16-bit field whose decoded value is the smallest one >= ``value``.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise AmountOutOfRange(f"transfer value must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TRANSFER_VALUE:
        raise AmountOutOfRange(f"transfer value {value} is outside 0..{MAX_TRANSFER_VALUE}")
    exponent, mantissa = _encode(value, 3)
    return exponent << 14 | mantissa


def decode_transfer_amount(field: int) -> int:
    """Integer value (in field units) of a 16-bit TransferAmount field."""
    if not isinstance(field, int) or isinstance(field, bool) or not 0 <= field <= 0xFFFF:
        raise AmountOutOfRange(f"amount field must be 0..65535, got {field!r}")
    return _value(field >> 14, field & _MANTISSA_MAX)


def _to_decimal(units: Decimal | int | str) -> Decimal:
    if isinstance(units, float):
        raise AmountOutOfRange("amounts must be Decimal, int or str, never float")
    try:
        value = Decimal(units)
    except (InvalidOperation, TypeError, ValueError):
        raise AmountOutOfRange(f"not a number: {units!r}") from None
    if not value.is_finite():
        raise AmountOutOfRange(f"not a finite amount: {units!r}")
    return value


def _ceil_scaled(units: Decimal | int | str, decimals: int) -> int:
    """``ceil(units * 10**decimals)``, exactly."""
    value = _to_decimal(units).scaleb(decimals, _EXACT)
    return int(value.to_integral_value(rounding="ROUND_CEILING", context=_EXACT))


def encode_amount(units: Decimal | int | str) -> int:
    """Encode an amount in units of 1 (kWh, m3, ...) into the 16-bit field, rounded UP.

    The field counts 0.1 units (docs/sts-protocol.md §6.1): 2000.0 kWh -> 0x416A (= 2000.4 kWh),
    0.01 kWh -> 0x0001. Raises :class:`AmountOutOfRange` for negative values or values above
    1 820 162.4.
    """
    value = _ceil_scaled(units, 1)
    if value < 0:
        raise AmountOutOfRange(f"amount {units} is negative")
    if value > MAX_TRANSFER_VALUE:
        raise AmountOutOfRange(f"amount {units} exceeds the largest 16-bit transfer amount 1820162.4")
    return encode_transfer_amount(value)


def decode_amount(field: int) -> Decimal:
    """Amount in units (kWh, m3, ...) carried by a 16-bit field: field value / 10, exact."""
    return Decimal(decode_transfer_amount(field)).scaleb(-1)


def encode_currency_amount(units: Decimal | int | str) -> int:
    """Encode a currency amount into the 20-bit value ``s<<19 | e<<14 | m`` (docs/sts-protocol.md §6.2).

    Counted in 10**-5 currency units and always rounded toward +infinity, in the customer's
    favour: a credit is rounded up (``100`` -> 100.00004), a debit (negative amount, sign bit set)
    to the smaller debit (``-1`` -> -0.99994, as the STS 531-1-07 Ed. 2.2 currency test expects).
    """
    value = _ceil_scaled(units, _CURRENCY_DECIMALS)  # ceiling of a negative amount: the smaller debit
    if abs(value) > _MAX_CURRENCY_VALUE:
        raise AmountOutOfRange(f"currency amount {units} is too large")
    if value < 0:
        exponent, mantissa = _encode_down(-value, 31)
        return 1 << 19 | exponent << 14 | mantissa
    exponent, mantissa = _encode(value, 31)
    return exponent << 14 | mantissa


def decode_currency_amount(field20: int) -> Decimal:
    """Signed currency amount of a 20-bit currency value."""
    if not isinstance(field20, int) or not 0 <= field20 < 1 << 20:
        raise AmountOutOfRange(f"currency field must be 20 bits, got {field20!r}")
    magnitude = _value((field20 >> 14) & 0x1F, field20 & _MANTISSA_MAX)
    sign = -1 if field20 >> 19 else 1
    return Decimal(sign * magnitude).scaleb(-_CURRENCY_DECIMALS, _EXACT)
