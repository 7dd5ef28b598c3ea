"""Log redaction and request ids.

STS token digits are bearer credentials for electricity, and the callback secrets, partner API keys,
the KEK and session ids are credentials for the back office: none of them may reach a log line. Two
layers, because either alone has gaps:

- `RedactTokenDigitsFilter` (on every handler) rewrites the message and pre-renders the traceback
  (`exc_text`) redacted, so any formatter that reuses `exc_text` prints the clean one;
- `RedactingFormatter` / `RedactingJsonFormatter` redact the *finished line*, so a traceback, a stack,
  an `extra` field or a request repr that the filter did not see is still cleaned.

`RequestIdFilter` stamps each record with the id of the request (or Celery task) it belongs to.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .requestid import current_request_id

# 20 digits, bare or grouped 4-4-4-4-4 with spaces or dashes.
# A run inside a decimal number (a duration such as 0.00026394199994683731 s) is not a token.
TOKEN_DIGITS = re.compile(r"(?<![\d.])(?:\d{4}[- ]?){4}\d{4}(?![\d])")

REDACTED = "[redacted]"
# Credentials recognisable by shape, whatever their value: partner keys (the prefix before the dot
# is meant to be logged, the rest is not), Authorization headers, session and CSRF cookies, and
# the secret path segments of the two Africa's Talking callbacks (a wrong guess is not logged either).
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(kplc_[0-9a-f]{8})\.[A-Za-z0-9_\-]{8,}"), r"\1." + REDACTED),
    (re.compile(r"(?i)\b(api-key|bearer)(\s+)[^\s\"',;]+"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)(sessionid|csrftoken)(=|%3D)[A-Za-z0-9]+"), r"\1\2" + REDACTED),  # also URL-encoded
    (re.compile(r"(/sms/delivery-reports/)[^/\s\"'?]+"), r"\1" + REDACTED),
    (re.compile(r"(/ussd/)[^/\s\"'?]+(?=/)"), r"\1" + REDACTED),
)
# Settings whose values are secrets; a value shorter than this is too common a string to hunt for.
SECRET_SETTINGS = (
    "SECRET_KEY",
    "STS_KEK",
    "AT_API_KEY",
    "SMS_DELIVERY_REPORT_SECRET",
    "USSD_CALLBACK_SECRET",
    "METRICS_TOKEN",
)
_MIN_SECRET = 8


def redact_token_digits(text: str) -> str:
    return TOKEN_DIGITS.sub("[token redacted]", text)


@lru_cache(maxsize=4)
def _secret_values(values: tuple[str, ...]) -> tuple[str, ...]:
    forms: set[str] = set()
    for value in values:
        if len(value) >= _MIN_SECRET:
            forms.add(value)
            forms.add(json.dumps(value)[1:-1])  # as it appears inside a JSON log line
    return tuple(sorted(forms, key=len, reverse=True))


def _configured_secrets() -> tuple[str, ...]:
    try:
        from django.conf import settings

        if not settings.configured:
            return ()
        values = tuple(str(getattr(settings, name, "") or "") for name in SECRET_SETTINGS)
    except Exception:  # noqa: BLE001 - logging must work before and without settings
        return ()
    return _secret_values(values)


def redact_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    for value in _configured_secrets() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str) -> str:
    """Everything a log line must not carry: token digits and secrets."""
    return redact_token_digits(redact_secrets(text))


class RedactTokenDigitsFilter(logging.Filter):
    """Redacts the message and the traceback of every record (the name predates the secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return redact(super().format(record))


class RedactingJsonFormatter(JsonFormatter):
    def jsonify_log_record(self, log_data: Any) -> str:
        return redact(super().jsonify_log_record(log_data))
