"""Production: refuse to start without real secrets; secure cookies and HSTS."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env_secret

DEBUG = False
SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or ""
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set in production.")
if not STS_KEK:  # noqa: F405
    raise ImproperlyConfigured(
        "STS_KEK (or STS_KEK_FILE) must be set in production: vending keys are wrapped under it."
    )

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 31536000
SECURE_CONTENT_TYPE_NOSNIFF = True

if CLOCK_START is not None:  # noqa: F405
    raise ImproperlyConfigured("CLOCK_START is for rehearsals only: production runs on the wall clock.")
