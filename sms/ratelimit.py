"""The global send rate (settings.SMS_SEND_RATE messages per second, 0 = unlimited).

A one-second window of `kplc_sts.ratelimit`: with Redis (SMS_RATE_REDIS_URL) every worker process
shares it, so the rate holds however many workers run; without Redis, or while it is down, each
process keeps its own window.
"""

from __future__ import annotations

import time

from django.conf import settings

from kplc_sts.ratelimit import Window, window_take

SEND_WINDOW = Window(key="sms:rate", seconds=1)


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
    deadline = time.monotonic() + max_wait
    while True:
        now = time.time()
        granted = window_take(SEND_WINDOW, limit=rate, wanted=count, redis_url=settings.SMS_RATE_REDIS_URL, now=now)
        if granted:
            return granted
        if time.monotonic() > deadline:
            return 0
        time.sleep(max(int(now) + 1 - now, 0.001))
