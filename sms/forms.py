"""Validation of Africa's Talking delivery reports: every field checked, nothing reaches the database
that its column cannot hold.

`id` and `status` are required (a report without them cannot be applied: 400). The other fields are
informative: a value that does not fit is clamped (retryCount) or cut/dropped (the strings), never a
500 from the database. Values must be plain strings or numbers: nested JSON objects are refused.
"""

from __future__ import annotations

from typing import Any

from django import forms

from meters.phones import kenyan_phone_or_none

from .models import DeliveryReport

_MAX_ID = DeliveryReport._meta.get_field("provider_message_id").max_length
_MAX_STATUS = DeliveryReport._meta.get_field("status").max_length
_MAX_REASON = DeliveryReport._meta.get_field("failure_reason").max_length
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


class DeliveryReportForm(forms.Form):
    id = forms.CharField(max_length=_MAX_ID)
    status = forms.CharField(max_length=_MAX_STATUS)
    failureReason = forms.CharField(required=False)
    phoneNumber = forms.CharField(required=False)
    networkCode = forms.CharField(required=False)
    retryCount = forms.CharField(required=False)

    @classmethod
    def from_payload(cls, data: Any) -> DeliveryReportForm:
        getter = data.get if hasattr(data, "get") else (lambda _key: None)
        values = {}
        for name in FIELDS:
            value = _scalar(getter(name))
            if value is not None:
                values[name] = value
        return cls(values)

    def clean_failureReason(self) -> str:
        return self.cleaned_data["failureReason"][:_MAX_REASON]

    def clean_phoneNumber(self) -> str:
        # Only kept as a hint for matching; a number that is not a Kenyan mobile is dropped.
        return kenyan_phone_or_none(self.cleaned_data["phoneNumber"]) or ""

    def clean_networkCode(self) -> str:
        code = self.cleaned_data["networkCode"]
        return code if code.isascii() and code.isdigit() and len(code) <= _MAX_NETWORK else ""

    def clean_retryCount(self) -> int | None:
        raw = self.cleaned_data["retryCount"]
        if not raw.isascii() or not raw.isdigit():
            return None
        # Clamped: more than 5 digits is above the maximum anyway (and int() of a huge string is slow).
        return RETRY_COUNT_MAX if len(raw) > 5 else min(int(raw), RETRY_COUNT_MAX)

    def report_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "provider_message_id": data["id"],
            "status": data["status"],
            "failure_reason": data["failureReason"],
            "phone_number": data["phoneNumber"],
            "network_code": data["networkCode"],
            "retry_count": data["retryCount"],
        }
