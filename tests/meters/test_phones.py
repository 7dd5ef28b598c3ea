from __future__ import annotations

import pytest

from meters.phones import InvalidPhoneNumber, kenyan_phone_or_none, normalize_kenyan_phone


@pytest.mark.parametrize(
    "raw", ["0712 345 678", "0712-345-678", "254712345678", "+254 712 345 678", "712345678", "(0712) 345678"]
)
def test_kenyan_mobile_formats_normalise(raw: str) -> None:
    assert normalize_kenyan_phone(raw) == "+254712345678"


def test_the_01_series_is_a_mobile_too() -> None:
    assert normalize_kenyan_phone("0110 123 456") == "+254110123456"


@pytest.mark.parametrize("raw", ["", "12345", "0812345678", "+255712345678", "07123456789", "54000000015"])
def test_non_kenyan_or_malformed_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_kenyan_phone(raw)
    assert kenyan_phone_or_none(raw) is None
