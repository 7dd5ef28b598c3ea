"""Luhn, meter numbers, PANs, base dates and TIDs (docs/sts-protocol.md §2 and §5)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokens.sts import (
    BaseDate,
    InvalidMeterNumber,
    KeyExpired,
    TidOutOfRange,
    is_valid_meter_number,
    luhn_check_digit,
    next_tid,
    pan_from_meter_number,
    tid_from_datetime,
    tid_to_datetime,
    validate_meter_number,
)


def naive_luhn(digits: str) -> int:
    """Independent textbook Luhn, for the property test below."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


@pytest.mark.parametrize(
    ("digits", "check"),
    [("1234567890", 3), ("60072700000000000", 9), ("00000100000000008", 2)],  # docs/sts-protocol.md §2
)
def test_luhn_examples(digits: str, check: int) -> None:
    assert luhn_check_digit(digits) == check


@given(st.text(alphabet="0123456789", min_size=1, max_size=30))
def test_luhn_matches_textbook_algorithm(digits: str) -> None:
    assert luhn_check_digit(digits) == naive_luhn(digits)


@pytest.mark.parametrize("bad", ["", "12a4", "١٢٣", "12 34"])
def test_luhn_rejects_non_digits(bad: str) -> None:
    with pytest.raises(InvalidMeterNumber):
        luhn_check_digit(bad)


def test_pan_from_11_digit_meter_number() -> None:
    assert pan_from_meter_number("47500150231") == "600727475001502312"  # docs/sts-protocol.md §2


def test_pan_from_13_digit_meter_number_uses_iin_0000() -> None:
    drn = "010000000000" + str(luhn_check_digit("010000000000"))
    pan = pan_from_meter_number(drn)
    assert pan.startswith("0000") and len(pan) == 18
    assert pan[4:17] == drn
    assert int(pan[17]) == luhn_check_digit(pan[:17])


def test_meter_number_separators_are_ignored() -> None:
    assert validate_meter_number("4750 015 0231") == "47500150231"
    assert validate_meter_number("4750-015-0231") == "47500150231"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("47500150232", "Luhn"),  # last digit wrong
        ("4750015023", "11 or 13 digits"),  # 10 digits
        ("475001502311", "11 or 13 digits"),  # 12 digits
        ("4750015023A", "only digits"),
        ("", "11 or 13 digits"),
    ],
)
def test_invalid_meter_numbers_say_why(number: str, reason: str) -> None:
    with pytest.raises(InvalidMeterNumber, match=reason):
        validate_meter_number(number)
    assert not is_valid_meter_number(number)


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_every_completed_11_digit_number_is_valid_and_every_other_check_digit_is_not(body: str) -> None:
    good = body + str(luhn_check_digit(body))
    assert is_valid_meter_number(good)
    for wrong in set("0123456789") - {good[-1]}:
        assert not is_valid_meter_number(body + wrong)


def test_base_dates() -> None:
    assert [int(bd) for bd in BaseDate] == [1993, 2014, 2035]
    assert BaseDate.BD_2014.start == datetime(2014, 1, 1)
    assert BaseDate.BD_1993.code == "93"
    assert BaseDate.BD_1993.next is BaseDate.BD_2014
    assert BaseDate.BD_2035.next is None


def test_tid_examples_from_the_vectors() -> None:
    # CTSA01: issued 2004-03-01 13:55 -> 5871715; CTSA21 truncates seconds (§5.1)
    assert tid_from_datetime(datetime(2004, 3, 1, 13, 55), 1993) == 5871715
    assert tid_from_datetime(datetime(2004, 3, 1, 13, 55, 59), 1993) == 5871715
    assert tid_to_datetime(5871715, 1993) == datetime(2004, 3, 1, 13, 55)


def test_last_valid_minute_of_each_base_date() -> None:
    # §5.1: the last valid minute for base 1993 is 24 Nov 2024 20:15
    assert tid_to_datetime(0xFFFFFF, 1993) == datetime(2024, 11, 24, 20, 15)
    assert tid_to_datetime(0xFFFFFF, 2014) == datetime(2045, 11, 24, 20, 15)
    with pytest.raises(TidOutOfRange):
        tid_from_datetime(datetime(2024, 11, 24, 20, 16), 1993)
    with pytest.raises(TidOutOfRange):
        tid_from_datetime(datetime(1992, 12, 31, 23, 59), 1993)


def test_aware_datetimes_use_their_wall_clock() -> None:
    eat = timezone(timedelta(hours=3))
    assert tid_from_datetime(datetime(2024, 9, 1, 10, 0, tzinfo=eat), 2014) == tid_from_datetime(
        datetime(2024, 9, 1, 10, 0), 2014
    )


@given(st.integers(min_value=0, max_value=0xFFFFFF), st.sampled_from([1993, 2014, 2035]))
def test_tid_datetime_round_trip(tid: int, base: int) -> None:
    assert tid_from_datetime(tid_to_datetime(tid, base), base) == tid


def test_next_tid_uses_the_current_minute() -> None:
    now = datetime(2024, 9, 1, 10, 0, 30)
    assert next_tid(None, now, 2014) == tid_from_datetime(now, 2014)
    assert next_tid(tid_from_datetime(now, 2014) - 100, now, 2014) == tid_from_datetime(now, 2014)


def test_next_tid_is_strictly_increasing_within_one_minute() -> None:
    now = datetime(2024, 9, 1, 10, 0)
    tids = []
    last = None
    for _ in range(5):
        last = next_tid(last, now, 2014)
        tids.append(last)
    assert tids == sorted(set(tids))
    assert tids[0] == tid_from_datetime(now, 2014)


def test_next_tid_skips_the_reserved_minute() -> None:
    midnight = datetime(2004, 3, 29, 0, 0)
    first = next_tid(None, midnight, 1993)
    assert first % 1440 == 0
    assert next_tid(first, midnight, 1993) == first + 2  # 00:01 is never issued (CTSA09)
    assert next_tid(None, midnight + timedelta(minutes=1), 1993) % 1440 == 2


@given(
    st.one_of(st.none(), st.integers(min_value=0, max_value=0xFFFF00)),
    st.integers(min_value=0, max_value=0xFFFF00),
)
def test_next_tid_properties(last: int | None, minute: int) -> None:
    now = tid_to_datetime(minute, 2014)
    tid = next_tid(last, now, 2014)
    assert tid % 1440 != 1
    assert tid >= minute
    if last is not None:
        assert tid > last


def test_next_tid_refuses_past_ken_and_past_24_bits() -> None:
    now = tid_to_datetime(0x560000, 2014)
    with pytest.raises(KeyExpired):
        next_tid(None, now, 2014, ken=0x55)
    assert next_tid(None, now, 2014, ken=0x56) == 0x560000
    with pytest.raises(TidOutOfRange):
        next_tid(0xFFFFFF, tid_to_datetime(0xFFFFFF, 2014), 2014)
