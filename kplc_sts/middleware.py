"""Project-wide middleware: trusted-proxy headers, request ids and one log line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .clientip import client_ip, is_trusted_proxy
from .requestid import VALID_ID, new_request_id, request_id_reset, request_id_set

logger = logging.getLogger("kplc_sts.request")

# Headers that only a proxy of ours may set. From anyone else they are lies: X-Forwarded-Proto would
# make Django believe the request came over HTTPS (SECURE_PROXY_SSL_HEADER), X-Forwarded-For would
# choose the address the partner allowlist and the login lockout see.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_REQUEST_ID")


class TrustedProxyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            for header in PROXY_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)


class RequestLogMiddleware:
    """Gives the request its id (X-Request-ID from our proxy, or a new one) and logs one line for it.

    The line is the access log: method, path (callback secrets redacted by the log formatter),
    status, duration, client address and who was authenticated. It never carries headers or bodies.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = offered if VALID_ID.match(offered) else new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_set(request_id)
        started = time.monotonic()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            response["X-Request-ID"] = request_id
            return response
        finally:
            # Probes every few seconds would drown the real traffic; and the fields cost a vend's
            # time only where the access log is on.
            if request.path != "/healthz" and logger.isEnabledFor(logging.INFO):
                logger.info(
                    "%s %s %s %.1fms",
                    request.method,
                    request.path,
                    status,
                    (time.monotonic() - started) * 1000,
                    extra={
                        "http_method": request.method,
                        "path": request.path,
                        "status": status,
                        "duration_ms": round((time.monotonic() - started) * 1000, 1),
                        "client_ip": client_ip(request),
                        "principal": _principal(request),
                    },
                )
            request_id_reset(token)


def _principal(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    try:
        return str(user.get_username())
    except Exception:  # noqa: BLE001 - a log field must never fail the request
        return ""
