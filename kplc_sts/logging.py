"""Log redaction: STS token digits are bearer credentials for electricity and never get logged."""

from __future__ import annotations

import logging
import re

# 20 digits, bare or grouped 4-4-4-4-4 with spaces or dashes.
# A run inside a decimal number (a duration such as 0.00026394199994683731 s) is not a token.
TOKEN_DIGITS = re.compile(r"(?<![\d.])(?:\d{4}[- ]?){4}\d{4}(?![\d])")


def redact_token_digits(text: str) -> str:
    return TOKEN_DIGITS.sub("[token redacted]", text)


class RedactTokenDigitsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_token_digits(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
