"""Every error code the partner API returns: its HTTP status, what it means, and whether sending the
same request again with the same reference is safe. Integrators script against this list; it is
rendered into each operation's description in the OpenAPI schema, and a test keeps it complete.

"Retry safe" means: repeating the identical request (same reference) can never sell twice. It does
not mean a retry will succeed: a refused amount stays refused until the request changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    status: int
    meaning: str
    retry_safe: bool
    retry_note: str = ""


CODES: dict[str, ErrorCode] = {
    # --- request shape ---
    "MALFORMED_REQUEST": ErrorCode(400, "The body is not valid JSON (or is nested too deeply).", True, "fix the body"),
    "UNSUPPORTED_MEDIA_TYPE": ErrorCode(415, "Send Content-Type: application/json.", True, "fix the header"),
    "INVALID_BODY": ErrorCode(400, "The body is not a JSON object of the documented fields.", True, "fix the body"),
    "MISSING_FIELD": ErrorCode(400, "A required field is missing (see `field`).", True, "fix the body"),
    "INVALID_FIELD": ErrorCode(400, "A field has a wrong type or value (see `field`).", True, "fix the body"),
    "INVALID_METER_NUMBER": ErrorCode(
        400, "Not 11 or 13 digits, or the last digit is not the Luhn check digit.", True, "fix the number"
    ),
    "INVALID_AMOUNT": ErrorCode(400, "Not a decimal KES amount with at most 2 decimals.", True, "fix the amount"),
    "INVALID_REFERENCE": ErrorCode(400, "The reference is not 1-64 of A-Z a-z 0-9 . _ : -", True, "fix the reference"),
    "INVALID_PHONE": ErrorCode(400, "customer_phone is not a Kenyan mobile number.", True, "fix or omit it"),
    "INVALID_REASON": ErrorCode(400, "The reversal reason is empty or longer than 500 characters.", True, "fix it"),
    # --- who is calling ---
    "UNAUTHENTICATED": ErrorCode(401, "No `Authorization: Api-Key <key>` header.", True, "add the header"),
    "INVALID_API_KEY": ErrorCode(401, "The key is unknown, revoked, or the partner is suspended.", True),
    "IP_NOT_ALLOWED": ErrorCode(403, "This partner may not call from this address.", True),
    "FORBIDDEN": ErrorCode(403, "Not allowed for this key.", True),
    "RATE_LIMITED": ErrorCode(429, "Too many requests; wait for Retry-After seconds.", True, "after Retry-After"),
    # --- the sale ---
    "UNKNOWN_METER": ErrorCode(404, "No such meter in the register.", True),
    "METER_BLOCKED": ErrorCode(422, "The meter is blocked or retired; the customer must call KPLC.", True),
    "METER_NON_COMPLIANT": ErrorCode(422, "The meter needs a technician's visit before any sale.", True),
    "KEY_CHANGE_REQUIRED": ErrorCode(
        422, "The meter must take its Reset and Update codes first and they cannot be issued now.", True
    ),
    "AMOUNT_TOO_LOW": ErrorCode(422, "Below this partner's minimum vend amount.", True),
    "AMOUNT_TOO_HIGH": ErrorCode(422, "Above this partner's maximum vend amount.", True),
    "DAILY_LIMIT_EXCEEDED": ErrorCode(422, "The sale would exceed this partner's daily limit.", True),
    "DUPLICATE_REFERENCE": ErrorCode(
        409,
        "This reference was already used for a different request; nothing was sold now.",
        True,
        "it never succeeds: a new sale needs a new reference",
    ),
    "VEND_NOT_FOUND": ErrorCode(404, "No vend with this reference for this partner.", True),
    "RESPONSE_EXPIRED": ErrorCode(
        410,
        "This reference was sold, longer ago than the replay window (VEND_REPLAY_DAYS, 7 days by default): "
        "its response is no longer kept. Nothing was sold now.",
        True,
        "it never succeeds: the sale stands; a new sale needs a new reference",
    ),
    "VENDING_UNAVAILABLE": ErrorCode(503, "Tokens cannot be made right now (no valid vending key).", True, "later"),
    "KEY_CHANGE_UNSAFE": ErrorCode(
        503,
        "The meter's key change is misconfigured (it would clear its token memory onto the same key); "
        "vending for it is held until the utility fixes it.",
        True,
        "after the utility fixes its keys; same reference",
    ),
    "SERVICE_UNAVAILABLE": ErrorCode(
        503, "A temporary outage; nothing was committed.", True, "after Retry-After, same reference"
    ),
    "INTERNAL_ERROR": ErrorCode(
        500, "Unexpected error.", True, "same reference: you get the vend's outcome, never a second sale"
    ),
    "NOT_FOUND": ErrorCode(404, "No such API endpoint.", True),
    "METHOD_NOT_ALLOWED": ErrorCode(405, "Wrong HTTP method for this endpoint.", True),
    "NOT_ACCEPTABLE": ErrorCode(406, "Accept must allow application/json.", True),
}

_COMMON = (
    "UNAUTHENTICATED",
    "INVALID_API_KEY",
    "IP_NOT_ALLOWED",
    "RATE_LIMITED",
    "SERVICE_UNAVAILABLE",
    "INTERNAL_ERROR",
)
OPERATION_CODES: dict[str, tuple[str, ...]] = {
    "meter": ("INVALID_METER_NUMBER", "UNKNOWN_METER", *_COMMON),
    "vend": (
        "MALFORMED_REQUEST",
        "UNSUPPORTED_MEDIA_TYPE",
        "INVALID_BODY",
        "MISSING_FIELD",
        "INVALID_FIELD",
        "INVALID_METER_NUMBER",
        "INVALID_AMOUNT",
        "INVALID_REFERENCE",
        "INVALID_PHONE",
        "UNKNOWN_METER",
        "METER_BLOCKED",
        "METER_NON_COMPLIANT",
        "KEY_CHANGE_REQUIRED",
        "AMOUNT_TOO_LOW",
        "AMOUNT_TOO_HIGH",
        "DAILY_LIMIT_EXCEEDED",
        "DUPLICATE_REFERENCE",
        "RESPONSE_EXPIRED",
        "VENDING_UNAVAILABLE",
        "KEY_CHANGE_UNSAFE",
        *_COMMON,
    ),
    "vend_detail": ("VEND_NOT_FOUND", "RESPONSE_EXPIRED", *_COMMON),
    "reprint": ("VEND_NOT_FOUND", "RESPONSE_EXPIRED", *_COMMON),
    "reversal": (
        "MALFORMED_REQUEST",
        "UNSUPPORTED_MEDIA_TYPE",
        "MISSING_FIELD",
        "INVALID_REASON",
        "VEND_NOT_FOUND",
        *_COMMON,
    ),
}


def error_table(operation: str) -> str:
    """The operation's error codes as a Markdown table for its OpenAPI description."""
    lines = [
        "",
        "",
        "**Error codes** (`error.code`):",
        "",
        "| code | HTTP | meaning | retry with the same reference |",
        "|---|---|---|---|",
    ]
    for code in OPERATION_CODES[operation]:
        entry = CODES[code]
        retry = ("safe" if entry.retry_safe else "**not** the same request") + (
            f" ({entry.retry_note})" if entry.retry_note else ""
        )
        lines.append(f"| `{code}` | {entry.status} | {entry.meaning} | {retry} |")
    return "\n".join(lines)


def error_extension(operation: str) -> list[dict[str, object]]:
    """The same list, machine-readable, as the operation's `x-error-codes`."""
    return [
        {
            "code": code,
            "status": CODES[code].status,
            "meaning": CODES[code].meaning,
            "retry_safe": CODES[code].retry_safe,
        }
        for code in OPERATION_CODES[operation]
    ]
