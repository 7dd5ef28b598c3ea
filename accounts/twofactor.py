"""TOTP second factor (django-otp) for the staff whose mistakes cost the most, and session limits.

Who needs it: superusers, and anyone who can reveal token digits, issue management tokens or decide
reversals (`SECOND_FACTOR_PERMISSIONS`). With STAFF_2FA_REQUIRED (production's default) such a user
who signed in with a password alone is sent to enrol an authenticator (first time) or to type a
code, and reaches no other staff page until then. The demo and the tests leave it off.
"""

from __future__ import annotations

import time
from base64 import b32encode
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

SECOND_FACTOR_PERMISSIONS = (
    "tokens.view_token_digits",
    "tokens.issue_management_token",
    "tokens.change_reversalrequest",
)
# Paths a half-signed-in user may still reach: the second-factor pages themselves, signing out,
# static files, and the machine endpoints (they have their own credentials, not staff sessions).
EXEMPT_PREFIXES = (
    "/accounts/2fa/",
    "/accounts/logout/",
    "/static/",
    "/healthz",
    "/metrics",
    "/api/",
    "/ussd/",
    "/sms/",
)
SESSION_AUTH_AT = "kplc_auth_at"


def needs_second_factor(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_staff", False):
        return bool(getattr(user, "is_superuser", False))
    return bool(user.is_superuser or any(user.has_perm(perm) for perm in SECOND_FACTOR_PERMISSIONS))


def has_confirmed_device(user: Any) -> bool:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def safe_next(request: HttpRequest, default: str = "/dashboard/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or default
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


def device_secret(device: Any) -> str:
    return b32encode(device.bin_key).decode()


class StaffSessionMiddleware:
    """After django-otp's middleware: the absolute session lifetime, then the second-factor gate."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            started = request.session.get(SESSION_AUTH_AT)
            if started is None:
                request.session[SESSION_AUTH_AT] = time.time()
            elif time.time() - float(started) > settings.SESSION_MAX_AGE_SECONDS:
                logout(request)
                return HttpResponseRedirect(f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}")
            if (
                settings.STAFF_2FA_REQUIRED
                and not request.path.startswith(EXEMPT_PREFIXES)
                and needs_second_factor(user)
                and not user.is_verified()
            ):
                step = "accounts:2fa-verify" if has_confirmed_device(user) else "accounts:2fa-setup"
                return HttpResponseRedirect(f"{reverse(step)}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


def remember_sign_in(sender: Any, request: HttpRequest | None = None, **_kwargs: Any) -> None:
    """user_logged_in: the absolute session lifetime counts from the password sign-in."""
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_AUTH_AT] = time.time()
