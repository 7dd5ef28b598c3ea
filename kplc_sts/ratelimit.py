"""Fixed-window counters: the one rate limiter of the project (partner throttle, USSD, SMS send rate).

A window is a key counted with INCRBY and expired after its window: one round trip per hit on
Redis, shared by every process. Without Redis the Django cache counts (per process with the
demo's local-memory cache). A fixed window may let up to twice the rate through across a window
boundary, which is fine for fairness and flood control; the money limits are enforced elsewhere,
in the database.

When Redis is unreachable the counter answers None and is left alone for a few seconds, so no
request waits on it; each caller decides what None means (let the request through, or count in
this process only).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

from kplc_sts import clock

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 5.0
_down_until: dict[str, float] = {}


@lru_cache(maxsize=4)
def redis_client(url: str) -> redis.Redis:
    """One client (and connection pool) per URL for the process. Django's Redis cache builds a new
    client object for every operation, a measurable part of a vend's CPU where it runs on each
    request. Short timeouts: a counter or check on the request path must never hold up a sale or a
    USSD screen."""
    return redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)


@dataclass(frozen=True)
class Window:
    """A counter of `seconds` length: `key` names it; the current window's number is appended.

    `on_clock` windows count `kplc_sts.clock` seconds: limits on what a customer does ("3 SMS
    copies an hour") follow a rehearsal's accelerated clock. The others count wall seconds: limits
    on load (a partner's requests per minute, the gateway's messages per second) protect real
    processes, which an accelerated clock does not speed up.
    """

    key: str
    seconds: int
    on_clock: bool = False

    def current(self, now: float | None = None) -> tuple[str, float]:
        """The current window's key and the seconds until it ends."""
        if now is None:
            now = clock.timestamp() if self.on_clock else time.time()
        number = int(now // self.seconds)
        return f"{self.key}:{self.seconds}:{number}", (number + 1) * self.seconds - now


def window_count(
    window: Window, *, cost: int = 1, redis_url: str = "", in_process: bool = False, now: float | None = None
) -> int | None:
    """Add `cost` to the current window and return its total, or None if the store is unavailable.

    With `redis_url` the count lives in that Redis; `in_process` counts in this process alone;
    otherwise the default Django cache counts.
    """
    key, _ = window.current(now)
    if in_process:
        return _process_count(key, cost)
    if not redis_url:
        return _cache_count(key, cost, window.seconds)
    if time.monotonic() < _down_until.get(redis_url, 0.0):
        return None
    try:
        pipe = redis_client(redis_url).pipeline(transaction=False)
        pipe.incrby(key, cost)
        pipe.expire(key, window.seconds + 1, nx=True)
        return int(pipe.execute()[0])
    except redis.RedisError:
        _down_until[redis_url] = time.monotonic() + REDIS_RETRY_SECONDS
        logger.warning("rate counter store unavailable; counting skipped for %.0f s", REDIS_RETRY_SECONDS)
        return None


_process_lock = threading.Lock()
_process_windows: dict[str, int] = {}


def _process_count(key: str, cost: int) -> int:
    with _process_lock:
        if key not in _process_windows and len(_process_windows) > 1000:
            _process_windows.clear()  # old windows: a key names its window, so they are never read again
        _process_windows[key] = _process_windows.get(key, 0) + cost
        return _process_windows[key]


def _cache_count(key: str, cost: int, seconds: int) -> int | None:
    try:
        cache.add(key, 0, seconds + 1)
        return int(cache.incr(key, cost))
    except ValueError:  # expired between add and incr: this is the window's first hit
        cache.add(key, cost, seconds + 1)
        return cost
    except Exception:
        logger.warning("rate counter cache unavailable", exc_info=True)
        return None


def window_allows(window: Window, *, limit: int, redis_url: str = "", fail_open: bool = True) -> bool:
    """Count one hit; whether it is within `limit` for the window (`fail_open` when the store is down)."""
    total = window_count(window, redis_url=redis_url)
    if total is None:
        return fail_open
    return total <= limit


def window_take(window: Window, *, limit: int, wanted: int, redis_url: str = "", now: float | None = None) -> int:
    """Take up to `wanted` of the window's `limit`; returns how many were granted (maybe 0).

    Taking more than the window had left only over-counts a window that is full anyway. Without a
    shared store, or with it down, the grant comes from this process's own window.
    """
    total = window_count(window, cost=wanted, redis_url=redis_url, in_process=not redis_url, now=now)
    if total is None:
        total = window_count(window, cost=wanted, in_process=True, now=now)
    assert total is not None  # the in-process window is always there
    return max(min(wanted, limit - (total - wanted)), 0)


def redis_url_of_cache() -> str:
    """The default cache's Redis URL when the cache is Redis ("" otherwise)."""
    config: dict[str, Any] = settings.CACHES["default"]
    return str(config["LOCATION"]) if str(config["BACKEND"]).endswith("RedisCache") else ""
