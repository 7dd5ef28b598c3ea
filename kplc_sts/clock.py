"""The one clock every service, task and view asks for "now".

Normally it is the wall clock (`django.utils.timezone.now`). For a rehearsal every process (web,
workers, beat, the simulator) runs the same accelerated clock, derived from two parameters each
gets at start, so they agree without talking to each other:

- CLOCK_START: the simulated instant at which the clock started (ISO 8601, with a zone);
- CLOCK_SPEED: simulated seconds per wall-clock second (1 = real time), counted from
  CLOCK_WALL_START, the wall-clock instant (Unix seconds) that corresponds to CLOCK_START.

Production settings refuse an accelerated clock. Tests move time with time_machine, which this
clock follows because it reads the wall clock underneath.

Durations come in two kinds, and on an accelerated clock they differ:

- clock durations (business time: an SMS retry back-off, a USSD session, a per-hour cap) are
  counted on this clock; where a wall-clock mechanism has to wait them out (a Celery countdown, a
  cache TTL) it gets `to_wall(seconds)`;
- wall durations (how long a worker may take to send, how long the gateway takes to report) are
  properties of processes, which an accelerated clock does not speed up; compared with this
  clock's timestamps they become `from_wall(seconds)` clock seconds.
"""

from __future__ import annotations

import datetime as dt
import math
import time

from django.conf import settings
from django.utils import timezone


def now() -> dt.datetime:
    """The current instant (aware, UTC), on the accelerated clock when one is configured."""
    start: dt.datetime | None = settings.CLOCK_START
    if start is None:
        return timezone.now()
    elapsed = (time.time() - settings.CLOCK_WALL_START) * settings.CLOCK_SPEED
    return start + dt.timedelta(seconds=elapsed)


def accelerated() -> bool:
    return settings.CLOCK_START is not None


def speed() -> float:
    """Clock seconds per wall second (1 on the wall clock)."""
    return float(settings.CLOCK_SPEED) if accelerated() else 1.0


def timestamp() -> float:
    """Now as Unix seconds on this clock (for fixed windows counted in clock time)."""
    return now().timestamp()


def to_wall(seconds: float) -> float:
    """A clock duration as the wall seconds it lasts (a Celery countdown, a sleep)."""
    return seconds / speed()


def from_wall(seconds: float) -> float:
    """A wall duration (a process's own timing) as clock seconds, to compare with clock timestamps."""
    return seconds * speed()


def cache_ttl(seconds: float, *, at_least: float = 1.0) -> int:
    """A cache TTL for something that lives `seconds` of clock time, in the cache's wall seconds,
    never under `at_least` wall seconds (a rehearsal plays a USSD session within milliseconds, yet
    the entry must outlive the session's own HTTP round trips)."""
    return max(math.ceil(to_wall(seconds)), math.ceil(at_least))


def sleep_simulated(seconds: float) -> None:
    """Sleep for `seconds` of clock time (shorter in wall time on an accelerated clock)."""
    time.sleep(to_wall(max(seconds, 0.0)))


def localdate(at: dt.datetime | None = None) -> dt.date:
    """The Africa/Nairobi date of `at` (default: now)."""
    return timezone.localtime(at or now()).date()


def api_timestamp(moment: dt.datetime) -> str:
    """An instant as the partner API gives every timestamp: ISO 8601 in UTC ("...+00:00"), whatever
    zone it was computed in (an accelerated clock started at +03:00 keeps that offset)."""
    return moment.astimezone(dt.UTC).isoformat()
