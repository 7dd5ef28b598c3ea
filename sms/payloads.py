"""Validation of Africa's Talking delivery reports: every field checked, nothing reaches the database
that its column cannot hold.

`id` and `status` are required (a report without them cannot be applied: 400). The other fields are
informative: a value that does not fit is clamped (retryCount) or cut/dropped (the strings), never a
500 from the database. Values must be plain strings or numbers: nested JSON objects are refused, and
so is a NUL character anywhere (PostgreSQL text cannot hold one).

Plain code, not a Django form: the endpoint takes a report per message sent, hundreds a second, and
a form's field machinery cost 74 µs of each (bench/report_bench.py), a tenth of the handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meters.phones import kenyan_phone_or_none

from .models import DeliveryReport

_MAX_ID: int = DeliveryReport._meta.get_field("provider_message_id").max_length or 0
_MAX_STATUS: int = DeliveryReport._meta.get_field("status").max_length or 0
_MAX_REASON: int = DeliveryReport._meta.get_field("failure_reason").max_length or 0
_MAX_NETWORK: int = DeliveryReport._meta.get_field("network_code").max_length or 0
RETRY_COUNT_MAX = 32767  # PositiveSmallIntegerField on every database Django supports
FIELDS = ("id", "status", "failureReason", "phoneNumber", "networkCode", "retryCount")


def _scalar(value: Any) -> str | None:
    """A form or JSON value as text; None for anything that is not a plain scalar."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return str(value).strip()
    return None


def _retry_count(raw: str) -> int | None:
    if not raw.isascii() or not raw.isdigit():
        return None
    # Clamped: more than 5 digits is above the maximum anyway (and int() of a huge string is slow).
    return RETRY_COUNT_MAX if len(raw) > 5 else min(int(raw), RETRY_COUNT_MAX)


@dataclass(frozen=True, slots=True)
class DeliveryReportPayload:
    """A report's fields as `delivery_report_receive` takes them, or the names of the fields that
    made it unusable (`errors`, sorted; empty when the report is usable)."""

    errors: list[str]
    values: dict[str, Any]

    @classmethod
    def from_payload(cls, data: Any) -> DeliveryReportPayload:
        getter = data.get if hasattr(data, "get") else (lambda _key: None)
        raw = {name: _scalar(getter(name)) or "" for name in FIELDS}
        errors = [name for name, value in raw.items() if "\x00" in value]
        if not raw["id"] or len(raw["id"]) > _MAX_ID:
            errors.append("id")
        if not raw["status"] or len(raw["status"]) > _MAX_STATUS:
            errors.append("status")
        if errors:
            return cls(errors=sorted(set(errors)), values={})
        network_code = raw["networkCode"]
        return cls(
            errors=[],
            values={
                "provider_message_id": raw["id"],
                "status": raw["status"],
                "failure_reason": raw["failureReason"][:_MAX_REASON],
                # Only kept as a hint for matching; a number that is not a Kenyan mobile is dropped.
                "phone_number": kenyan_phone_or_none(raw["phoneNumber"]) or "",
                "network_code": network_code
                if network_code.isascii() and network_code.isdigit() and len(network_code) <= _MAX_NETWORK
                else "",
                "retry_count": _retry_count(raw["retryCount"]),
            },
        )
