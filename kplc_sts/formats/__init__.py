"""The staff screens' one date and time format, always in Africa/Nairobi: "1 Dec 2026 22:17" and
"1 Dec 2026".

FORMAT_MODULE_PATH points Django's localisation at `en/formats.py`, so the admin's lists and
`{{ value|date:"DATETIME_FORMAT" }}` use it; Python code that writes a time into a message or an
explanation goes through `staff_datetime` / `staff_date` / `staff_time`, so it reads the same.
(Customer SMS and USSD screens keep their own short forms: they are not staff screens.)
"""

from __future__ import annotations

import datetime as dt

from django.utils import formats, timezone


def staff_datetime(value: dt.datetime) -> str:
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def staff_date(value: dt.date | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        value = timezone.localtime(value)
    return formats.date_format(value, "DATE_FORMAT")


def staff_time(value: dt.datetime) -> str:
    return formats.date_format(timezone.localtime(value), "TIME_FORMAT")
