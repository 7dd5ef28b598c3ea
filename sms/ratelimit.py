"""A global send-rate limit (settings.SMS_SEND_RATE messages per second, 0 = unlimited).

With Redis (SMS_RATE_REDIS_URL) every worker process shares one fixed one-second window, so the
rate holds however many workers run. Without Redis (the embedded demo) it is per process.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

import redis
from django.conf import settings

_local_lock = threading.Lock()
_local_window = [0, 0]  # [second, count]


@lru_cache(maxsize=2)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2)


def _take_local(rate: int, second: int, count: int) -> int:
    with _local_lock:
        if _local_window[0] != second:
            _local_window[0], _local_window[1] = second, 0
        granted = max(min(count, rate - _local_window[1]), 0)
        _local_window[1] += granted
        return granted


def _take_redis(url: str, rate: int, second: int, count: int) -> int:
    key = f"sms:rate:{second}"
    pipe = _client(url).pipeline()
    pipe.incrby(key, count)
    pipe.expire(key, 5)
    total, _ = pipe.execute()
    # Taking more than the window had left only over-counts a window that is full anyway.
    return max(min(count, rate - (int(total) - count)), 0)


def acquire_many(count: int, *, max_wait: float = 30.0) -> int:
    """Take up to `count` sends from the window (blocking until at least one is free).

    Returns how many may be sent now (>= 1), or 0 if max_wait passed. Workers take a handful per
    round trip to Redis instead of one, and never more than a twentieth of a second's rate, so
    one worker cannot take a whole window while the others wait.
    """
    rate = int(settings.SMS_SEND_RATE or 0)
    if rate <= 0:
        return count
    count = max(1, min(count, max(rate // 20, 1)))
    url = settings.SMS_RATE_REDIS_URL
    deadline = time.monotonic() + max_wait
    while True:
        now = time.time()
        second = int(now)
        try:
            granted = _take_redis(url, rate, second, count) if url else _take_local(rate, second, count)
        except redis.RedisError:
            granted = _take_local(rate, second, count)  # Redis down: keep sending, at the per-process rate
        if granted:
            return granted
        if time.monotonic() > deadline:
            return 0
        time.sleep(max(second + 1 - now, 0.001))


def acquire(*, max_wait: float = 30.0) -> bool:
    """Block until the window has room for one more message; False if max_wait passed."""
    return acquire_many(1, max_wait=max_wait) == 1
