"""Africa's Talking through the official SDK (africastalking 2.0.3), behind our own adapter.

The SDK has no base-URL setting; we point its SMS service at settings.AT_API_URL by setting
`_baseUrl` on our own SMSService instance (the SDK builds `_baseUrl + "/messaging"`). Each
recipient's statusCode decides the outcome: 100-102 accepted; invalid, unsupported,
blacklisted and do-not-disturb numbers are permanent; everything else is worth a retry.

The SDK sends every request with a bare `requests.post`: a new TCP (and, against AT, TLS)
connection per message. `PooledSMSService` keeps the SDK's request building, validation and
response handling but sends through one keep-alive `requests.Session` per thread (the
mitigation in the research notes, A.3); at hundreds of messages a second the handshakes were
most of the cost.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
import requests.adapters
from africastalking.Service import AfricasTalkingException
from africastalking.SMS import SMSService
from django.conf import settings

from .base import BaseBackend, SendResult

logger = logging.getLogger(__name__)

ACCEPTED = {100, 101, 102}
# statusCode -> permanent failure reason; retrying these can never succeed.
PERMANENT = {
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    406: "UserInBlacklist",
    409: "DoNotDisturbRejection",
}
# Bulk notices may sit in AT's queue; a customer's codes go out straight away.
ENQUEUE_PURPOSES = {"notice"}
TIMEOUT = (3.05, 9.05)


def _cost(text: str) -> tuple[Decimal | None, str]:
    parts = (text or "").split()
    if len(parts) == 2:
        try:
            return Decimal(parts[1]), parts[0][:3]
        except InvalidOperation:
            pass
    return None, ""


class PooledSMSService(SMSService):
    """The SDK's SMSService, sending through a keep-alive session instead of `requests.post`.

    Only the synchronous path is replaced (we never pass the SDK's `callback`); it behaves like
    the SDK's own `_make_request`: JSON for 2xx answers with Content-Type application/json, the
    text for other 2xx, AfricasTalkingException with the body for anything else.
    """

    def __init__(self, username: str, api_key: str) -> None:
        super().__init__(username, api_key)
        self.session = requests.Session()
        # One connection per thread is all we use; a small pool keeps a stray thread cheap too.
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _make_request(
        self,
        url: str,
        method: str,
        headers: dict[str, str],
        data: Any,
        params: Any,
        callback: Any = None,
        timeout: Any = TIMEOUT,
    ) -> Any:
        if callback is not None:
            return super()._make_request(url, method, headers, data, params, callback=callback, timeout=timeout)
        method = method.upper()
        if method not in ("GET", "POST"):
            raise AfricasTalkingException("Unexpected HTTP method: " + method)
        response = self.session.request(method, url, headers=headers, data=data, params=params, timeout=timeout)
        if 200 <= response.status_code < 300:
            if response.headers.get("content-type") == "application/json":
                return response.json()
            return response.text
        raise AfricasTalkingException(response.text)


class AfricasTalkingBackend(BaseBackend):
    def __init__(self) -> None:
        self._local = threading.local()

    def _service(self) -> SMSService:
        service = getattr(self._local, "service", None)
        if service is None:
            service = PooledSMSService(settings.AT_USERNAME, settings.AT_API_KEY)
            if settings.AT_API_URL:
                service._baseUrl = settings.AT_API_URL.rstrip("/") + "/version1"
            self._local.service = service
        return service

    def send(self, *, recipient: str, body: str, purpose: str) -> SendResult:
        try:
            response: Any = self._service().send(
                body,
                [recipient],
                sender_id=settings.AT_SENDER_ID or None,
                enqueue=purpose in ENQUEUE_PURPOSES,
                timeout=TIMEOUT,
            )
        except ValueError as exc:  # the SDK's own check on the number, before any request
            return SendResult.rejected("InvalidPhoneNumber", str(exc))
        except AfricasTalkingException as exc:  # any non-2xx answer: AT's side, try later
            return SendResult.retry(f"gateway error: {str(exc)[:300]}", "GatewayError")
        except requests.RequestException as exc:
            # A timeout may still have been sent; AT has no idempotency key, so a retry risks one
            # duplicate notice, which is cheaper than a customer who never hears of the update.
            return SendResult.retry(f"{exc.__class__.__name__}: {str(exc)[:300]}", "NetworkError")
        if not isinstance(response, dict):
            return SendResult.retry(f"unexpected response: {str(response)[:300]}", "BadResponse")
        try:
            entry = response["SMSMessageData"]["Recipients"][0]
        except (KeyError, IndexError, TypeError):
            message = str(response.get("SMSMessageData", {}).get("Message", response))[:300]
            return SendResult.retry(f"no recipient in response: {message}", "BadResponse")
        code = int(entry.get("statusCode", 0))
        status = str(entry.get("status", ""))
        if code in ACCEPTED and entry.get("messageId"):
            cost, currency = _cost(str(entry.get("cost", "")))
            return SendResult.sent(str(entry["messageId"]), cost, currency)
        if code in PERMANENT:
            return SendResult.rejected(PERMANENT[code], f"{code} {status}")
        return SendResult.retry(f"{code} {status}", status or "GatewayError")
