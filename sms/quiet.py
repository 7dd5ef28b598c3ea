"""Quiet hours: when customers are not sent campaign reminders (Africa/Nairobi local time).

From SMS_QUIET_START (default 20:00) to SMS_QUIET_END (default 08:00) the next morning. A reminder
written then waits, queued, until the end of quiet hours (the sweep sends it then); one a worker
claims then (a retry that slipped into the night) goes back to wait for the morning.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone


def _bounds() -> tuple[dt.time, dt.time]:
    return settings.SMS_QUIET_START, settings.SMS_QUIET_END


def quiet_hours(at: dt.datetime) -> bool:
    """Whether `at` falls in quiet hours, Nairobi time."""
    start, end = _bounds()
    local = timezone.localtime(at).time()
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(at: dt.datetime) -> dt.datetime:
    """The first instant at or after `at` outside quiet hours (`at` itself if it is outside)."""
    if not quiet_hours(at):
        return at
    _, end = _bounds()
    local = timezone.localtime(at)
    morning = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if morning <= local:
        morning = timezone.make_aware(dt.datetime.combine(local.date() + dt.timedelta(days=1), end))
    return morning
