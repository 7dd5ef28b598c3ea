"""Every API failure as `{"error": {"code", "message", "field"}}` with a stable code; never an HTML page."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, connection, transaction
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from kplc_sts.metrics import api_error_observe
from tokens.errors import VendError
from tokens.stats import api_error_record

logger = logging.getLogger(__name__)

# Serializer field -> the code for "this field's value is wrong".
FIELD_CODES = {
    "meter_number": "INVALID_METER_NUMBER",
    "amount": "INVALID_AMOUNT",
    "reference": "INVALID_REFERENCE",
    "customer_phone": "INVALID_PHONE",
    "reason": "INVALID_REASON",
}

_CLASS_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ParseError, "MALFORMED_REQUEST"),
    (exceptions.NotAuthenticated, "UNAUTHENTICATED"),
    (exceptions.AuthenticationFailed, "INVALID_API_KEY"),
    (exceptions.NotFound, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.NotAcceptable, "NOT_ACCEPTABLE"),
    (exceptions.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (exceptions.Throttled, "RATE_LIMITED"),
]


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def _first_error(detail: Any, path: str | None = None) -> tuple[str | None, exceptions.ErrorDetail | str]:
    """The first (field, message) of a possibly nested serializer error structure."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = None if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            return _first_error(value, field)
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return path, detail


def _validation_error(exc: exceptions.ValidationError) -> Response:
    field, message = _first_error(exc.detail)
    error_code = getattr(message, "code", None)
    if field is None:
        code = "INVALID_BODY"
    elif error_code == "required":
        code = "MISSING_FIELD"
    else:
        code = FIELD_CODES.get(field.split(".")[0], "INVALID_FIELD")
    return Response(error_body(code, str(message), field), status=400)


def api_error_count(code: str) -> None:
    """Count an error response for the dashboard's vending-health page; never fails the response."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: a failed insert must not break the caller's transaction
                api_error_record(code)
        else:
            api_error_record(code)
    except Exception:
        logger.warning("could not count API error %s for the dashboard", code, exc_info=True)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = _error_response(exc)
    if response is not None:
        api_error_count(response.data["error"]["code"])
        api_error_observe(response.data["error"]["code"])
    return response


def _error_response(exc: Exception) -> Response:
    if isinstance(exc, VendError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.field), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        set_rollback()
        return _validation_error(exc)
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        headers = {}
        if auth_header := getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = str(auth_header)
        if wait := getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(wait))
        code = next((code for cls, code in _CLASS_CODES if isinstance(exc, cls)), None)
        if code is None:
            raw = exc.get_codes()
            code = raw.upper() if isinstance(raw, str) else "FORBIDDEN" if exc.status_code == 403 else "ERROR"
            if code == "PERMISSION_DENIED":
                code = "FORBIDDEN"
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    if isinstance(exc, DatabaseError):
        # The database is down or a statement timed out: nothing was committed, retrying is safe.
        logger.error("partner API: database error", exc_info=exc)
        set_rollback()
        return Response(
            error_body("SERVICE_UNAVAILABLE", "Vending is temporarily unavailable; retry with the same reference."),
            status=503,
            headers={"Retry-After": "5"},
        )
    logger.error("partner API: unexpected error", exc_info=exc)
    set_rollback()
    return Response(
        error_body("INTERNAL_ERROR", "Unexpected error; retry with the same reference to get the vend's outcome."),
        status=500,
    )
