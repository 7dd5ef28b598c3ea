"""The partner daily total on PostgreSQL; same function as `partners._portable`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import connection

from .models import PartnerDailyTotal

_RESERVE_SQL = (
    f"UPDATE {PartnerDailyTotal._meta.db_table} SET amount = amount + %s, vend_count = vend_count + 1 "  # noqa: S608
    "WHERE partner_id = %s AND day = %s AND amount <= %s"
)


def daily_total_add(*, partner_id: int, day: dt.date, amount: Decimal, headroom: Decimal) -> bool:
    """Add `amount` to the day's row if its total is at most `headroom`; False if not (or no row).
    One plain statement: it runs for every vend, and it holds the row lock until commit."""
    with connection.cursor() as cursor:
        cursor.execute(_RESERVE_SQL, [amount, partner_id, day, headroom])
        return bool(cursor.rowcount)
