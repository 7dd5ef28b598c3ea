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


def _take_local(rate: int, second: int) -> bool:
    with _local_lock:
        if _local_window[0] != second:
            _local_window[0], _local_window[1] = second, 0
        if _local_window[1] < rate:
            _local_window[1] += 1
            return True
        return False


def _take_redis(url: str, rate: int, second: int) -> bool:
    key = f"sms:rate:{second}"
    pipe = _client(url).pipeline()
    pipe.incr(key)
    pipe.expire(key, 5)
    count, _ = pipe.execute()
    return int(count) <= rate


def acquire(*, max_wait: float = 30.0) -> bool:
    """Block until the window has room for one more message; False if max_wait passed."""
    rate = int(settings.SMS_SEND_RATE or 0)
    if rate <= 0:
        return True
    url = settings.SMS_RATE_REDIS_URL
    deadline = time.monotonic() + max_wait
    while True:
        now = time.time()
        second = int(now)
        try:
            ok = _take_redis(url, rate, second) if url else _take_local(rate, second)
        except redis.RedisError:
            ok = _take_local(rate, second)  # Redis down: keep sending, at the per-process rate
        if ok:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(max(second + 1 - now, 0.001))
