"""Production: refuse to start without real secrets or with any demo default; secure cookies and HSTS.

Every refusal names the variable to set, so an operator fixes the deployment instead of the code.
`manage.py check --deploy --fail-level WARNING` passes with the variables documented in
`.env.example` (tests/project/test_production_settings.py proves it).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import LOGGING, METRICS_TOKEN, env_bool, env_list, env_secret

# Values the demo, the docs or the Dockerfile's build step use: never valid in production.
DEMO_SECRETS = frozenset(
    {
        "insecure-dev-only-key-change-me",
        "dev-delivery-report-secret",
        "demo-dlr-secret",
        "demo-ussd-secret",
        "demo-metrics-token",
        "local-gateway-key",
        "collectstatic-only",
    }
)
MIN_SECRET_LENGTH = 16


def _refuse(message: str) -> None:
    raise ImproperlyConfigured(message)


def _required_secret(name: str, *, min_length: int = MIN_SECRET_LENGTH) -> str:
    value = env_secret(name) or ""
    if not value:
        _refuse(f"{name} (or {name}_FILE) must be set in production.")
    if value in DEMO_SECRETS:
        _refuse(
            f"{name} is a demo value; generate a real one "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    if len(value) < min_length:
        _refuse(f"{name} must be at least {min_length} characters.")
    return value


DEBUG = env_bool("DJANGO_DEBUG", False)
if DEBUG:
    _refuse("DJANGO_DEBUG must be off in production: debug pages show settings and tracebacks.")
SECRET_KEY = _required_secret("DJANGO_SECRET_KEY", min_length=50)
if not STS_KEK:  # noqa: F405
    _refuse("STS_KEK (or STS_KEK_FILE) must be set in production: vending keys are wrapped under it.")

# No default hosts: an empty list would make every request fail, a guessed one would be wrong.
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    _refuse("DJANGO_ALLOWED_HOSTS must list the host names this back office answers to (comma-separated).")

# Africa's Talking: the base settings point the SDK at the local fake gateway; production must say
# where the real one is, over HTTPS, with a real key. The console and memory backends would print or
# drop customers' codes, so they are refused too.
SMS_BACKEND = os.environ.get("SMS_BACKEND", "sms.backends.africastalking.AfricasTalkingBackend")
if SMS_BACKEND != "sms.backends.africastalking.AfricasTalkingBackend":
    _refuse(f"SMS_BACKEND={SMS_BACKEND!r} is for development; production sends through Africa's Talking.")
AT_API_URL = os.environ.get("AT_API_URL", "")
if not AT_API_URL:
    _refuse(
        "AT_API_URL must be set in production (https://api.africastalking.com); unset means the local fake gateway."
    )
if urlsplit(AT_API_URL).scheme != "https":
    _refuse(f"AT_API_URL={AT_API_URL!r} must be an https:// URL in production.")
AT_API_KEY = _required_secret("AT_API_KEY")
SMS_DELIVERY_REPORT_SECRET = _required_secret("SMS_DELIVERY_REPORT_SECRET")
USSD_CALLBACK_SECRET = _required_secret("USSD_CALLBACK_SECRET")
if METRICS_TOKEN:  # optional (a network allowlist may be used instead), but never a demo value
    METRICS_TOKEN = _required_secret("METRICS_TOKEN")

STAFF_2FA_REQUIRED = env_bool("STAFF_2FA_REQUIRED", True)
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
_handlers: dict[str, dict[str, object]] = LOGGING["handlers"]  # type: ignore[assignment]
_handlers["console"]["formatter"] = "json" if LOG_FORMAT == "json" else "plain"

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Probes and scrapers inside the network speak plain HTTP to gunicorn.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)

if CLOCK_START is not None:  # noqa: F405
    raise ImproperlyConfigured("CLOCK_START is for rehearsals only: production runs on the wall clock.")
