"""SMS gateway backends, chosen by settings.SMS_BACKEND like Django's e-mail backends."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import BaseBackend, SendResult

__all__ = ["BaseBackend", "SendResult", "get_backend"]


@lru_cache(maxsize=4)
def _backend(path: str) -> BaseBackend:
    return import_string(path)()


def get_backend() -> BaseBackend:
    """One backend instance per process and setting (the AT SDK client is reused)."""
    return _backend(settings.SMS_BACKEND)
