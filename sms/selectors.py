"""Reads of messages wherever they are: the outbox (still to send or settle) and the log (settled).

A message is in exactly one of the two; it moves from the outbox to the log at any moment
(`sms.services.log`). Reads that count do it in one statement over both (one snapshot on
PostgreSQL), so a row moving meanwhile is counted once. Reads that list read the outbox first
and the log second and keep the log's copy of a row seen in both, so a row moving in between is
neither lost nor doubled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet

from .models import Message, MessageFields, MessageLog

Status = Message.Status
# A message from either table: both carry every field a reader needs.
MessageRecord = MessageFields
FAILING_STATUSES = (Status.FAILED, Status.REJECTED)
_OUTBOX, _LOG = Message._meta.db_table, MessageLog._meta.db_table


def _newest(records: Iterable[MessageFields], limit: int) -> list[MessageFields]:
    by_id: dict[int, MessageFields] = {}
    for record in records:  # outbox first, the log after it: the log's copy wins
        by_id[int(record.pk)] = record
    return sorted(by_id.values(), key=lambda record: (record.created_at, record.pk), reverse=True)[:limit]


def messages_of_meter(*, meter_id: int, limit: int = 30) -> list[MessageFields]:
    """A meter's newest messages, outbox and log together, newest first (the care timeline)."""
    outbox = list(Message.objects.filter(meter_id=meter_id).order_by("-created_at", "-id")[:limit])
    logged = list(MessageLog.objects.filter(meter_id=meter_id).order_by("-created_at", "-id")[:limit])
    return _newest([*outbox, *logged], limit)


def messages_newest(*, limit: int) -> list[MessageFields]:
    """The newest messages by id, outbox and log together (the metrics' recent mix)."""
    outbox = list(Message.objects.order_by("-id").only("id", "purpose", "status", "created_at")[:limit])
    logged = list(MessageLog.objects.order_by("-id").only("id", "purpose", "status", "created_at")[:limit])
    return sorted(_newest([*outbox, *logged], 2 * limit), key=lambda record: record.pk, reverse=True)[:limit]


def message_find(*, pk: int) -> MessageFields | None:
    """One message by id, wherever it is (the log is read second: see the module docstring)."""
    found: MessageFields | None = Message.objects.filter(pk=pk).first()
    return MessageLog.objects.filter(pk=pk).first() or found


def across(build: Callable[[type[MessageFields]], QuerySet[Any]]) -> list[dict[str, Any]]:
    """Rows of `build(Message)` UNION ALL `build(MessageLog)` in one statement. `build` returns a
    values() queryset (grouped counts, typically); the caller sums the two tables' rows."""
    # No ORDER BY inside a compound statement (SQLite refuses it; the models' Meta has one).
    outbox, logged = build(Message).order_by(), build(MessageLog).order_by()
    return list(outbox.union(logged, all=True))


def counts_by(build: Callable[[type[MessageFields]], QuerySet[Any]], key: str, value: str = "n") -> dict[Any, int]:
    """`across` summed per `key`: e.g. {status: count} over both tables."""
    totals: dict[Any, int] = {}
    for row in across(build):
        totals[row[key]] = totals.get(row[key], 0) + int(row[value] or 0)
    return totals


def _failing_rows(columns: str, *, meter_column: str | None = None) -> tuple[str, list[Any]]:
    """Failed or rejected messages (of one meter, or of any meter) from both tables, UNION ALL."""
    marks = ", ".join(["%s"] * len(FAILING_STATUSES))
    meter = f"x.meter_id = {meter_column}" if meter_column else "x.meter_id IS NOT NULL"
    parts = [
        f"SELECT {columns} FROM {table} x WHERE {meter} AND x.status IN ({marks})"  # noqa: S608 - names, not values
        for table in (_OUTBOX, _LOG)
    ]
    return " UNION ALL ".join(parts), [*FAILING_STATUSES, *FAILING_STATUSES]


def failing_meters_sql(*, threshold: int) -> tuple[str, list[Any]]:
    """SQL selecting the ids of meters with at least `threshold` failed or rejected messages in
    the outbox and the log together (for `pk__in=RawSQL(...)`)."""
    rows, params = _failing_rows("x.meter_id")
    return f"SELECT u.meter_id FROM ({rows}) u GROUP BY u.meter_id HAVING COUNT(*) >= %s", [*params, threshold]  # noqa: S608


def failing_meters_count(*, threshold: int) -> int:
    sql, params = failing_meters_sql(threshold=threshold)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) f", params)  # noqa: S608
        return int(cursor.fetchone()[0])


def failing_count_sql(*, meter_column: str) -> tuple[str, list[Any]]:
    """A scalar subquery: the failed or rejected messages of the meter `meter_column` names."""
    rows, params = _failing_rows("1", meter_column=meter_column)
    return f"(SELECT COUNT(*) FROM ({rows}) u)", params  # noqa: S608


def last_failure_sql(*, meter_column: str) -> tuple[str, list[Any]]:
    """A scalar subquery: the failure reason of the meter's newest failed or rejected message."""
    rows, params = _failing_rows("x.failure_reason, x.created_at, x.id", meter_column=meter_column)
    return f"(SELECT u.failure_reason FROM ({rows}) u ORDER BY u.created_at DESC, u.id DESC LIMIT 1)", params  # noqa: S608


def batch_status_counts(*, batch_id: int, purposes: Sequence[str] | None = None) -> dict[str, int]:
    """A batch's messages by status, outbox and log together, in one statement."""

    def build(model: type[MessageFields]) -> QuerySet[Any]:
        rows = model._default_manager.filter(batch_id=batch_id)
        if purposes is not None:
            rows = rows.filter(purpose__in=list(purposes))
        return rows.values("status").annotate(n=Count("pk")).order_by()

    return counts_by(build, "status")
