"""Business errors of the vending service, each with a stable machine code partners can script against."""

from __future__ import annotations


class VendError(Exception):
    """A refusal with a stable `code`, a human `message`, the offending `field` and an HTTP status."""

    code = "VEND_REFUSED"
    status = 422
    field: str | None = None

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if field is not None:
            self.field = field
        if status:
            self.status = status


class InvalidMeterNumber(VendError):
    code, status, field = "INVALID_METER_NUMBER", 400, "meter_number"


class UnknownMeter(VendError):
    code, status, field = "UNKNOWN_METER", 404, "meter_number"


class MeterBlocked(VendError):
    code, status, field = "METER_BLOCKED", 422, "meter_number"


class MeterNonCompliant(VendError):
    code, status, field = "METER_NON_COMPLIANT", 422, "meter_number"


class KeyChangeRequired(VendError):
    code, status, field = "KEY_CHANGE_REQUIRED", 422, "meter_number"


class AmountTooLow(VendError):
    code, status, field = "AMOUNT_TOO_LOW", 422, "amount"


class AmountTooHigh(VendError):
    code, status, field = "AMOUNT_TOO_HIGH", 422, "amount"


class DailyLimitExceeded(VendError):
    code, status, field = "DAILY_LIMIT_EXCEEDED", 422, "amount"


class DuplicateReference(VendError):
    code, status, field = "DUPLICATE_REFERENCE", 409, "reference"


class VendNotFound(VendError):
    code, status, field = "VEND_NOT_FOUND", 404, "reference"


class ResponseExpired(VendError):
    """The sale stands, but its stored response was compacted after the replay window."""

    code, status, field = "RESPONSE_EXPIRED", 410, "reference"


class KeyChangeUnsafe(VendError):
    """The key change set up for this meter would let old tokens replay (a rollover onto the key it
    already has): our configuration is wrong, not the partner's request."""

    code, status, field = "KEY_CHANGE_UNSAFE", 503, None


class VendingUnavailable(VendError):
    """Our side cannot make the token right now (no vending key loaded, key expired): not the partner's fault."""

    code, status, field = "VENDING_UNAVAILABLE", 503, None
