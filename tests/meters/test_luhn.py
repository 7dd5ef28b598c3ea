"""Meter numbers as the importer validates them: 11 or 13 digits ending in a Luhn check digit."""

from __future__ import annotations

import pytest

from meters.services import meter_row_validate
from tests.factories import luhn_complete
from tokens.sts import is_valid_meter_number, luhn_check_digit


def row(meter_number: str) -> list[str]:
    return [meter_number, "600675", "1", "1", "2", "07", "02", "1993", "255", "ACC1", "Wanjiru", "0712345678", "Nyeri"]


@pytest.mark.parametrize(
    ("number", "iin"),
    [
        ("79927398713", "600727"),  # the textbook Luhn example, as an 11-digit DRN
        ("47500150231", "600727"),
        ("4222222222222", "0000"),  # 13-digit DRNs carry IIN 0000
        (luhn_complete("5400000001"), "600727"),
        (luhn_complete("000000000000"), "0000"),
    ],
)
def test_valid_meter_numbers_are_accepted_with_their_iin(number: str, iin: str) -> None:
    validated = meter_row_validate(row(number))
    assert isinstance(validated, tuple)
    assert validated[0] == number
    assert validated[1] == iin
    assert is_valid_meter_number(number)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("79927398710", "bad Luhn check digit (expected 3)"),
        ("47500150232", "bad Luhn check digit (expected 1)"),
        ("4222222222223", "bad Luhn check digit (expected 2)"),
        ("97927398713", "bad Luhn check digit (expected 5)"),  # transposed digits
        ("7992739871", "meter number must be 11 or 13 digits"),
        ("799273987130", "meter number must be 11 or 13 digits"),
        ("7992739871X", "meter number must be 11 or 13 digits"),
        ("7992-7398713", "meter number must be 11 or 13 digits"),
        ("７９９２７３９８７１３", "meter number must be 11 or 13 digits"),  # full-width digits
        ("", "meter number must be 11 or 13 digits"),
    ],
)
def test_invalid_meter_numbers_are_rejected_with_a_reason(number: str, reason: str) -> None:
    assert meter_row_validate(row(number)) == reason


def test_check_digit_agrees_with_the_sts_engine_for_every_final_digit() -> None:
    partial = "5412345678"
    good = partial + str(luhn_check_digit(partial))
    accepted = [digit for digit in "0123456789" if isinstance(meter_row_validate(row(partial + digit)), tuple)]
    assert accepted == [good[-1]]
