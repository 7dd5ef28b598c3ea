"""The one clock every service, task and view asks for "now".

Normally it is the wall clock (`django.utils.timezone.now`). For a rehearsal every process (web,
workers, beat, the simulator) runs the same accelerated clock, derived from two parameters each
gets at start, so they agree without talking to each other:

- CLOCK_START: the simulated instant at which the clock started (ISO 8601, with a zone);
- CLOCK_SPEED: simulated seconds per wall-clock second (1 = real time), counted from
  CLOCK_WALL_START, the wall-clock instant (Unix seconds) that corresponds to CLOCK_START.

Production settings refuse an accelerated clock. Tests move time with time_machine, which this
clock follows because it reads the wall clock underneath.
"""

from __future__ import annotations

import datetime as dt
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


def sleep_simulated(seconds: float) -> None:
    """Sleep for `seconds` of clock time (shorter in wall time on an accelerated clock)."""
    time.sleep(max(seconds, 0.0) / (settings.CLOCK_SPEED if accelerated() else 1.0))


def localdate(at: dt.datetime | None = None) -> dt.date:
    """The Africa/Nairobi date of `at` (default: now)."""
    return timezone.localtime(at or now()).date()


def api_timestamp(moment: dt.datetime) -> str:
    """An instant as the partner API gives every timestamp: ISO 8601 in UTC ("...+00:00"), whatever
    zone it was computed in (an accelerated clock started at +03:00 keeps that offset)."""
    return moment.astimezone(dt.UTC).isoformat()
