"""Identifiers: Luhn, meter numbers (DRN), PAN, base dates and TIDs.

docs/sts-protocol.md §2 (identifiers) and §5 (TID).
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta

from ._errors import InvalidMeterNumber, InvalidParameter, KeyExpired, TidOutOfRange

__all__ = [
    "IIN_11_DIGIT",
    "IIN_13_DIGIT",
    "TID_MAX",
    "BaseDate",
    "check_ken",
    "check_tid",
    "is_valid_meter_number",
    "luhn_check_digit",
    "next_tid",
    "normalise_base_date",
    "pan_from_meter_number",
    "tid_from_datetime",
    "tid_to_datetime",
    "validate_meter_number",
    "validate_pan",
]

#: IIN used with 11-digit meter numbers (all KPLC meters), §2.
IIN_11_DIGIT = "600727"
#: IIN used with 13-digit meter numbers (4-digit manufacturer codes).
IIN_13_DIGIT = "0000"

TID_MAX = (1 << 24) - 1
_MINUTES_PER_DAY = 1440
_SEPARATORS = re.compile(r"[\s-]")


# Luhn: the digit sum of 2*d for d = 0..9, as the ASCII digit it stands for (bytes.translate keeps
# the whole sum in C; this runs for every PAN a batch derives keys for).
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_check_digit(digits: str) -> int:
    """Return the Luhn check digit to append to ``digits``.

    Doubling starts with the rightmost digit of ``digits`` (the check digit goes to its right),
    §2: ``1234567890 -> 3``.
    """
    if not isinstance(digits, str) or not digits or not digits.isascii() or not digits.isdigit():
        raise InvalidMeterNumber(f"Luhn input must be decimal digits, got {digits!r}")
    raw = digits.encode("ascii")
    doubled = raw[::-2].translate(_DOUBLED)  # rightmost digit and every second one leftwards
    kept = raw[-2::-2]
    total = sum(doubled) + sum(kept) - 48 * len(raw)
    return (10 - total % 10) % 10


def _clean(number: str) -> str:
    if not isinstance(number, str):
        raise InvalidMeterNumber(f"meter number must be a string, got {type(number).__name__}")
    return _SEPARATORS.sub("", number)


def validate_meter_number(number: str) -> str:
    """Return the meter number (DRN) without separators, or raise :class:`InvalidMeterNumber`.

    Valid forms (§2): 11 digits (2-digit manufacturer code, 8-digit serial,
    Luhn digit; used with IIN 600727) or 13 digits (4-digit manufacturer code; used with IIN 0000).
    Spaces and hyphens are ignored.
    """
    digits = _clean(number)
    if digits and (not digits.isascii() or not digits.isdigit()):
        raise InvalidMeterNumber(f"meter number must contain only digits, got {number!r}")
    if len(digits) not in (11, 13):
        raise InvalidMeterNumber(f"meter number must have 11 or 13 digits, got {len(digits)}")
    expected = luhn_check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        raise InvalidMeterNumber(f"meter number {digits} fails the Luhn check (last digit should be {expected})")
    return digits


def is_valid_meter_number(number: str) -> bool:
    """True when :func:`validate_meter_number` would accept ``number``."""
    try:
        validate_meter_number(number)
    except InvalidMeterNumber:
        return False
    return True


def pan_from_meter_number(number: str) -> str:
    """Return the 18-digit meter PAN: IIN + DRN + Luhn digit over the preceding 17 digits.

    IIN 600727 for 11-digit meter numbers, 0000 for 13-digit ones (§2):
    ``47500150231 -> 600727475001502312``.
    """
    drn = validate_meter_number(number)
    body = (IIN_11_DIGIT if len(drn) == 11 else IIN_13_DIGIT) + drn
    return body + str(luhn_check_digit(body))


def validate_pan(pan: str) -> str:
    """Return an 18-digit PAN without separators or raise :class:`InvalidMeterNumber`.

    The PAN's IIN must be 600727 (11-digit DRN) or 0000 (13-digit DRN) and its final Luhn digit
    must be right. The embedded DRN's own Luhn digit is not re-checked: test PANs such as the
    compliance vectors' ``600727000000000009`` carry DRNs that are not Luhn-valid.
    """
    digits = pan if len(pan) == 18 else _clean(pan)
    if not digits.isascii() or not digits.isdigit() or len(digits) != 18:
        raise InvalidMeterNumber(f"PAN must be 18 digits, got {pan!r}")
    if not digits.startswith((IIN_11_DIGIT, IIN_13_DIGIT)):
        raise InvalidMeterNumber(f"PAN {digits} does not start with IIN 600727 or 0000")
    # Luhn over all 18 digits, check digit included (not doubled): valid when the sum ends in 0.
    # Runs twice per meter re-keyed (old and new key), so no call into luhn_check_digit.
    raw = digits.encode("ascii")
    if (sum(raw[-2::-2].translate(_DOUBLED)) + sum(raw[::-2])) % 10 != 18 * 48 % 10:
        raise InvalidMeterNumber(f"PAN {digits} fails the Luhn check")
    return digits


class BaseDate(enum.IntEnum):
    """The three STS base dates (§2, §5.5). The value is the year."""

    BD_1993 = 1993
    BD_2014 = 2014
    BD_2035 = 2035

    @property
    def start(self) -> datetime:
        """Midnight of 1 January of the base year, naive (the TID clock's zone is not standardised)."""
        return datetime(int(self), 1, 1)  # noqa: DTZ001 - STS TIDs are wall-clock minutes, see tid_from_datetime

    @property
    def code(self) -> str:
        """Two-digit code used by DKGA04: ``"93"``, ``"14"`` or ``"35"``."""
        return f"{int(self) % 100:02d}"

    @property
    def next(self) -> BaseDate | None:
        """The base date a TID rollover moves to (1993 -> 2014 -> 2035), None after 2035."""
        return {1993: BaseDate.BD_2014, 2014: BaseDate.BD_2035}.get(int(self))


_BASE_DATES: dict[object, BaseDate] = {int(bd): bd for bd in BaseDate}


def normalise_base_date(base_date: int | str | BaseDate) -> BaseDate:
    """Accept 1993/2014/2035 (int, str or :class:`BaseDate`) or the codes 93/14/35."""
    known = _BASE_DATES.get(base_date)  # fast path: enum construction costs ~1 us
    if known is not None:
        return known
    try:
        year = int(base_date)
    except (TypeError, ValueError):
        raise InvalidParameter(f"unknown base date {base_date!r}") from None
    year = {93: 1993, 14: 2014, 35: 2035}.get(year, year)
    try:
        return BaseDate(year)
    except ValueError:
        raise InvalidParameter(f"unknown base date {base_date!r}; use 1993, 2014 or 2035") from None


def tid_from_datetime(dt: datetime, base_date: int) -> int:
    """Minutes (seconds truncated) from the base date to ``dt`` (§5.1).

    The TID clock's time zone is not standardised (§5.1, "U"). The engine uses
    ``dt``'s wall-clock fields as given: an aware datetime is NOT converted, so pass it already in
    the zone the vending system uses. Raises :class:`TidOutOfRange` before the base date or past
    24 bits. The reserved minute is not skipped here; :func:`next_tid` does that.
    """
    start = normalise_base_date(base_date).start
    minutes = (dt.replace(tzinfo=None) - start) // timedelta(minutes=1)
    if not 0 <= minutes <= TID_MAX:
        raise TidOutOfRange(f"{dt.isoformat()} is outside the 24-bit TID range of base date {int(base_date)}")
    return minutes


def tid_to_datetime(tid: int, base_date: int) -> datetime:
    """The naive wall-clock minute a TID stands for."""
    if not isinstance(tid, int) or not 0 <= tid <= TID_MAX:
        raise TidOutOfRange(f"TID {tid!r} is outside 0..{TID_MAX}")
    return normalise_base_date(base_date).start + timedelta(minutes=tid)


def check_ken(ken: int) -> int:
    if not isinstance(ken, int) or not 0 <= ken <= 255:
        raise InvalidParameter(f"KEN must be 0..255, got {ken!r}")
    return ken


def check_tid(tid: int, ken: int = 255) -> int:
    """Validate a TID for a new token: 24 bits, not the reserved minute, not past the KEN.

    Reserved minute: TID % 1440 == 1 (00:01) is never issued (§5.2, CTSA09).
    KEN: the key is expired for TIDs with (TID >> 16) > KEN (§5.4).
    """
    if not isinstance(tid, int) or isinstance(tid, bool) or not 0 <= tid <= TID_MAX:
        raise TidOutOfRange(f"TID must be an integer in 0..{TID_MAX}, got {tid!r}")
    if tid % _MINUTES_PER_DAY == 1:
        raise TidOutOfRange(f"TID {tid} falls on the reserved minute 00:01 (TID % 1440 == 1)")
    if (tid >> 16) > check_ken(ken):
        raise KeyExpired(f"TID {tid} is past the key expiry number {ken} ((TID >> 16) = {tid >> 16})")
    return tid


def next_tid(last_tid: int | None, now: datetime, base_date: int, ken: int = 255) -> int:
    """Allocate the TID for the next token of one meter.

    The result is the current minute, or ``last_tid + 1`` when that is later (several tokens in
    the same minute, or a clock that went back), bumped past the reserved minute
    (TID % 1440 == 1). Raises :class:`TidOutOfRange` when the result leaves 24 bits or ``now``
    precedes the base date, :class:`KeyExpired` when ``(TID >> 16) > ken``.
    """
    candidate = tid_from_datetime(now, base_date)
    if last_tid is not None:
        if not isinstance(last_tid, int) or not 0 <= last_tid <= TID_MAX:
            raise TidOutOfRange(f"last TID must be in 0..{TID_MAX}, got {last_tid!r}")
        candidate = max(candidate, last_tid + 1)
    if candidate % _MINUTES_PER_DAY == 1:
        candidate += 1
    if candidate > TID_MAX:
        raise TidOutOfRange(f"no TID left after {last_tid} for base date {int(base_date)}")
    return check_tid(candidate, ken)
