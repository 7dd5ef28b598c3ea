"""Kenyan mobile numbers to E.164, fast enough for a 7.4 million row import.

A full phone-number library costs tens of microseconds a number; the register only holds
Kenyan mobiles (07xx / 01xx series), so a precise pattern does the job in about one.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
_KENYAN_MOBILE = re.compile(r"^(?:\+?254|0)?([17]\d{8})$")


class InvalidPhoneNumber(ValueError):
    pass


def normalize_kenyan_phone(raw: str) -> str:
    """'0712 345 678', '254712345678', '+254 712-345-678' -> '+254712345678'."""
    compact = _SEPARATORS.sub("", raw)
    match = _KENYAN_MOBILE.match(compact)
    if not match:
        raise InvalidPhoneNumber(f"not a Kenyan mobile number: {raw!r}")
    return "+254" + match.group(1)


def kenyan_phone_or_none(raw: str) -> str | None:
    """The E.164 form when `raw` is a Kenyan mobile number, else None (search boxes take both)."""
    try:
        return normalize_kenyan_phone(raw)
    except InvalidPhoneNumber:
        return None
