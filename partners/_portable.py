"""The partner daily total on other databases (SQLite: the demo); same function as `partners._pg`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import connection

from .models import PartnerDailyTotal

# SQLite keeps decimals as binary floating point, so a running total of cents drifts (500.10 + 500.20
# is 1000.3000000000001 there) and a vend up to the exact limit would be refused: round to cents.
# (CAST: a rounded value has no column affinity, and SQLite would compare it with the text parameter as text.)
_RESERVE_SQL = (
    f"UPDATE {PartnerDailyTotal._meta.db_table} SET amount = ROUND(amount + %s, 2), "  # noqa: S608
    "vend_count = vend_count + 1 WHERE partner_id = %s AND day = %s AND ROUND(amount, 2) <= CAST(%s AS NUMERIC)"
)


def daily_total_add(*, partner_id: int, day: dt.date, amount: Decimal, headroom: Decimal) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_RESERVE_SQL, [amount, partner_id, day, headroom])
        return bool(cursor.rowcount)
