"""Revoking or editing a partner key takes effect in every process at once.

Each process keeps authenticated keys for a few seconds (partners.services). A change made in one
process clears only that process's copy, so the change also bumps a version number in the shared
cache (Redis in production), and every process compares it with the version it last saw before
trusting its copy: one cache read per partner request, instead of a database query.

If the shared cache cannot be read the local copy is dropped (fail closed: the key is looked up in
the database again, which is always right).
"""

from __future__ import annotations

import logging
import threading

from django.core.cache import cache
from django.db import transaction

from kplc_sts.ratelimit import redis_client, redis_url_of_cache

logger = logging.getLogger(__name__)

VERSION_KEY = "partners:api-key-version"
VERSION_TTL = None  # never expires: an expired version would look like "no change"

_seen: dict[str, object] = {"version": None}
_lock = threading.Lock()


def _bump() -> None:
    try:
        if not cache.add(VERSION_KEY, 1, VERSION_TTL):
            cache.incr(VERSION_KEY)
    except Exception:
        logger.warning("could not publish a partner key change to the shared cache", exc_info=True)


def api_key_version_bump() -> None:
    """Tell every process that keys changed: now, and again once the change is committed (a process
    reading between the two would otherwise re-cache the old row)."""
    _bump()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(_bump)


def _version_read() -> object:
    """The shared version, read on every partner request: straight from Redis on the process's
    one client where the cache is Redis (the value Django's cache wrote: an int is stored as its
    digits, under the cache's full key), else through the cache."""
    url = redis_url_of_cache()
    if not url:
        return cache.get(VERSION_KEY)
    return redis_client(url).get(cache.make_key(VERSION_KEY))


def api_key_cache_sync() -> None:
    """Before trusting this process's key cache: clear it if any process changed a key since."""
    from .services import partner_api_key_cache_clear

    try:
        version = _version_read()
    except Exception:  # noqa: BLE001 - fail closed: without the version, trust nothing cached
        partner_api_key_cache_clear(local_only=True)
        return
    with _lock:
        if version != _seen["version"]:
            partner_api_key_cache_clear(local_only=True)
            _seen["version"] = version
