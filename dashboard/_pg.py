"""The dashboard's PostgreSQL statements; same functions as `dashboard._portable`."""

from __future__ import annotations

from django.db import connection

from meters.models import Meter


def meter_regions() -> list[str]:
    """Distinct regions by a loose index scan over (region, sgc): one index probe per region
    instead of reading millions of rows."""
    table = Meter._meta.db_table
    sql = f"""
        WITH RECURSIVE r(region) AS (
            (SELECT region FROM {table} ORDER BY region LIMIT 1)
            UNION ALL
            SELECT (SELECT m.region FROM {table} m WHERE m.region > r.region ORDER BY m.region LIMIT 1)
            FROM r WHERE r.region IS NOT NULL
        )
        SELECT region FROM r WHERE region IS NOT NULL
    """  # noqa: S608 - the table name is ours, not user input
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]
