"""`Authorization: Api-Key <key>` for the partner API, plus the permission and throttle that go with it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from kplc_sts.clientip import client_ip
from kplc_sts.ratelimit import Window, redis_url_of_cache, window_count

from .keyversion import api_key_cache_sync
from .models import Partner, PartnerApiKey
from .services import partner_api_key_authenticate, partner_ip_allowed

logger = logging.getLogger(__name__)

KEYWORD = "Api-Key"


@dataclass(frozen=True)
class PartnerPrincipal:
    """request.user for partner requests: not a staff account, never has staff permissions."""

    partner: Partner
    api_key: PartnerApiKey
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def pk(self) -> int:
        return self.partner.pk

    def get_username(self) -> str:
        return f"partner:{self.partner.pk}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[PartnerPrincipal, PartnerApiKey] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() != KEYWORD.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the header as 'Authorization: Api-Key <key>'.")
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        api_key_cache_sync()  # a key revoked or edited in another process is not trusted from the cache
        api_key = partner_api_key_authenticate(raw_key=raw_key)
        if api_key is None:
            logger.warning("partner API: rejected an invalid or revoked key (prefix %s)", raw_key[5:13])
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        if not api_key.partner.active:
            raise exceptions.AuthenticationFailed("This partner account is suspended.")
        return PartnerPrincipal(partner=api_key.partner, api_key=api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # A WWW-Authenticate header makes DRF answer 401 rather than 403.
        return KEYWORD


class IpNotAllowed(exceptions.PermissionDenied):
    default_code = "IP_NOT_ALLOWED"
    default_detail = "Requests from this address are not allowed for this partner."


class IsPartner(BasePermission):
    """An authenticated partner calling from one of its allowed addresses."""

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, PartnerPrincipal):
            return False
        # Behind our proxy REMOTE_ADDR is the proxy: client_ip believes X-Forwarded-For from TRUSTED_PROXIES only.
        if not partner_ip_allowed(partner=principal.partner, ip=client_ip(request)):
            logger.warning("partner API: partner %s called from a disallowed address", principal.partner.pk)
            raise IpNotAllowed()
        return True


class PartnerRateThrottle(BaseThrottle):
    """Per-partner request rate: a fixed-window counter in Redis (the cache in tests).

    For fairness between partners, not for security: the money limits are enforced in the vend's
    database transaction. One INCR per request on a persistent connection (DRF's SimpleRateThrottle
    reads and rewrites a list of every request time in the window: at hundreds of requests per
    second that list is tens of kilobytes per request). A fixed window may let up to twice the rate
    through across a window boundary, which is fine for fairness. If Redis is down the request is
    let through, and Redis is left alone for a few seconds so no request waits on it.
    """

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, PartnerPrincipal):
            return True
        num_requests, duration = _parse_rate(principal.partner)
        window = Window(key=f"partner-throttle:{principal.partner.pk}", seconds=duration)
        now = time.time()
        # None: the counter store is down. Fail open: the money limits still hold in the database.
        count = window_count(window, redis_url=redis_url_of_cache(), now=now)
        if count is None or count <= num_requests:
            return True
        self._wait = window.current(now)[1]
        return False

    def wait(self) -> float | None:
        return self._wait


_RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _rate(text: str) -> tuple[int, int]:
    number, _, period = text.partition("/")
    return int(number), _RATE_UNITS[period.strip()[0]]


def _parse_rate(partner: Partner) -> tuple[int, int]:
    if partner.throttle_rate:
        try:
            return _rate(partner.throttle_rate)
        except (ValueError, KeyError, IndexError):
            logger.warning("partner %s has an unreadable throttle rate; using the default", partner.pk)
    return _rate(settings.PARTNER_DEFAULT_THROTTLE_RATE)
