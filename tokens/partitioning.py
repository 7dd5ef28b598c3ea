"""Monthly range partitions of the vend history tables, on PostgreSQL (docs/partitioning.md).

PostgreSQL only: the callers (tokens.services.history, migration 0005) ask `kplc_sts.db.is_postgres`
first; the SQLite demo keeps plain tables. Months are Africa/Nairobi calendar months (EAT has no
daylight saving, so every boundary is 00:00+03), the unit of partner reconciliation and of monthly
tax returns, so an archived file is exactly one month's sales.

Every table has a DEFAULT partition: a row whose month has no partition yet (a clock far ahead in a
rehearsal, a test at a fixed date) is never refused. `partition_create` moves such rows out of the
default into the month's new partition, so creating partitions is always possible and idempotent.

Archiving a partition (export, proof, detach and drop) is not specific to these tables: it is in
`kplc_sts.partitions`, shared with the SMS log.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from kplc_sts.pgtuning import partition_storage_sql

MONTH_ZONE = ZoneInfo("Africa/Nairobi")


@dataclass(frozen=True)
class HistoryTable:
    table: str
    key: str  # the partition key: the row's creation timestamp


# Literal names (not models' db_table) so that migration 0005 keeps working whatever the models become.
VEND = HistoryTable("tokens_vend", "created_at")
ISSUED_TOKEN = HistoryTable("tokens_issuedtoken", "issued_at")
TOKEN_DIGEST = HistoryTable("care_tokendigest", "created_at")
HISTORY_TABLES = (VEND, ISSUED_TOKEN, TOKEN_DIGEST)

_NAME = re.compile(r"^(?P<table>.+)_p(?P<year>\d{4})(?P<month>\d{2})$")


def month_start(at: dt.datetime) -> dt.datetime:
    """The start (aware, Africa/Nairobi) of the calendar month holding `at`."""
    local = at.astimezone(MONTH_ZONE)
    return dt.datetime(local.year, local.month, 1, tzinfo=MONTH_ZONE)


def month_add(month: dt.datetime, months: int) -> dt.datetime:
    index = month.year * 12 + month.month - 1 + months
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=MONTH_ZONE)


def months_between(first: dt.datetime, last: dt.datetime) -> Iterator[dt.datetime]:
    """Month starts from `first`'s month to `last`'s month, both included."""
    month, end = month_start(first), month_start(last)
    while month <= end:
        yield month
        month = month_add(month, 1)


def partition_name(table: HistoryTable, month: dt.datetime) -> str:
    return f"{table.table}_p{month:%Y%m}"


def partition_month(table: HistoryTable, name: str) -> dt.datetime | None:
    """The month a partition of `table` holds, from its name (None for the default partition)."""
    found = _NAME.match(name)
    if found is None or found["table"] != table.table:
        return None
    return dt.datetime(int(found["year"]), int(found["month"]), 1, tzinfo=MONTH_ZONE)


def _literal(at: dt.datetime) -> str:
    return f"'{at.isoformat()}'"


def partitions_list(cursor: Any, table: HistoryTable) -> dict[str, dt.datetime]:
    """The table's monthly partitions (name -> month), without the default."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        [table.table],
    )
    found = {}
    for (name,) in cursor.fetchall():
        month = partition_month(table, name)
        if month is not None:
            found[name] = month
    return found


def is_partitioned(cursor: Any, table: HistoryTable) -> bool:
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table.table])
    row = cursor.fetchone()
    return row is not None and row[0] == "p"


def partition_create(cursor: Any, table: HistoryTable, month: dt.datetime) -> bool:
    """Create `month`'s partition of `table` unless it exists; rows of that month waiting in the
    default partition move into it. Returns whether it was created. Run inside a transaction."""
    name = partition_name(table, month)
    cursor.execute("SELECT to_regclass(%s)", [name])
    if cursor.fetchone()[0] is not None:
        return False
    low, high = _literal(month), _literal(month_add(month, 1))
    key = table.key
    # A standalone table first, filled from the default, then attached: attaching checks only this
    # (small) table, and the default loses the rows before the new bound would contradict them.
    cursor.execute(f"CREATE TABLE {name} (LIKE {table.table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bound CHECK ({key} >= {low} AND {key} < {high})")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {table.table}_default WHERE {key} >= {low} AND {key} < {high} RETURNING *) "  # noqa: S608
        f"INSERT INTO {name} SELECT * FROM moved"
    )
    cursor.execute(f"ALTER TABLE {table.table} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
    # The bound is now the partition constraint; the CHECK only saved ATTACH a scan.
    cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bound")
    # A new month inherits no storage parameters from its parent: give it the hot-table autovacuum.
    storage = partition_storage_sql(table.table, name)
    if storage:
        cursor.execute(storage)
    return True


def default_create(cursor: Any, table: HistoryTable) -> None:
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {table.table}_default PARTITION OF {table.table} DEFAULT")
