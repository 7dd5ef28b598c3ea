"""The outbox's statements for any database (SQLite: the demo and `make test`).

Same functions, same signatures and the same effects as `sms._pg`, in a few ORM statements per
row instead of one set-based statement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from kplc_sts.db import sql_value

from .backends import SendResult
from .events import codes_delivered
from .models import DeliveryReport, Message, MessageLog
from .tallies import tally_add

Status = Message.Status


def messages_mark_sent(*, accepted: Sequence[tuple[int, SendResult]], now: dt.datetime) -> list[int]:
    stored = []
    with transaction.atomic():
        for pk, result in accepted:
            if Message.objects.filter(pk=pk, status__in=[Status.SENDING, Status.QUEUED]).update(
                status=Status.SENT,
                provider_message_id=result.provider_message_id,
                cost=result.cost,
                currency=result.currency or "",
                sent_at=now,
                last_error="",
            ):
                stored.append(pk)
    return sorted(stored)


def report_receive(
    *,
    provider_message_id: str,
    status: str,
    failure_reason: str,
    phone_number: str,
    network_code: str,
    retry_count: int | None,
    final: str | None,
    now: dt.datetime,
    log_since: dt.datetime,
) -> bool:
    # log_since bounds the PostgreSQL twin's look in the log; here the caller's log_reports_apply,
    # which applies the same bound, does the looking.
    del log_since
    values = {
        "status": status,
        "failure_reason": failure_reason,
        "phone_number": phone_number,
        "network_code": network_code,
        "retry_count": retry_count,
        "received_at": now,
    }
    with transaction.atomic():
        report, created = DeliveryReport.objects.select_for_update().get_or_create(
            provider_message_id=provider_message_id, defaults=values
        )
        previous_final = report.status in ("Success", "Failed", "Rejected")
        if not created and not previous_final and final is not None:
            # An intermediate report (Sent, Buffered...) followed by the final one.
            report.status, report.failure_reason, report.applied_at = status, failure_reason, None
            report.save(update_fields=["status", "failure_reason", "applied_at"])
    if final is not None and report.applied_at is None:
        reports_apply(
            provider_message_ids=[provider_message_id],
            limit=1,
            report_status={"Success": Status.DELIVERED, "Failed": Status.FAILED, "Rejected": Status.REJECTED},
            now=now,
        )
    # One writer at a time here: a message in the outbox now is not in the log, and the other way round.
    return (
        final is not None
        and not Message.objects.filter(provider_message_id=provider_message_id).exists()
        and MessageLog.objects.filter(provider_message_id=provider_message_id, status=Status.SENT).exists()
    )


def reports_apply(
    *,
    provider_message_ids: Sequence[str] | None,
    limit: int,
    report_status: Mapping[str, str],
    now: dt.datetime,
    since: dt.datetime | None = None,
) -> int:
    pending = DeliveryReport.objects.filter(applied_at__isnull=True, status__in=list(report_status))
    if provider_message_ids is not None:
        pending = pending.filter(provider_message_id__in=list(provider_message_ids))
    if since is not None:
        pending = pending.filter(received_at__gte=since)
    applied = 0
    for report in pending.order_by("pk")[:limit]:
        with transaction.atomic():
            message = (
                Message.objects.select_for_update()
                .filter(provider_message_id=report.provider_message_id)
                .only("pk", "status", "batch_id", "purpose", "meter_id")
                .first()
            )
            if message is None:
                continue  # the worker has not stored the id yet; the sweep tries again
            final = report_status[report.status]
            if message.status in (Status.SENDING, Status.SENT, Status.QUEUED):
                Message.objects.filter(pk=message.pk).update(
                    status=final,
                    failure_reason=report.failure_reason if final != Status.DELIVERED else "",
                    delivered_at=now,
                )
                if final == Status.DELIVERED:
                    tally_add(message.batch_id, delivered=1)
                    if message.purpose == Message.Purpose.CODES and message.meter_id is not None:
                        codes_delivered.send(sender=Message, meter_ids=[message.meter_id], at=now)
                else:
                    tally_add(message.batch_id, failed=1)
            DeliveryReport.objects.filter(pk=report.pk).update(applied_at=now)
            applied += 1
    return applied


def messages_move_settled(
    *, where_sql: str, where_params: Sequence[Any], columns: Sequence[str], limit: int, now: dt.datetime
) -> int:
    """DELETE ... RETURNING then INSERT, in one transaction: the DELETE takes the write lock, so
    the rows copied are exactly the rows removed."""
    names = ", ".join(columns)
    outbox, log = Message._meta.db_table, MessageLog._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {outbox} WHERE id IN (SELECT id FROM {outbox} WHERE {where_sql} "  # noqa: S608
            f"ORDER BY id LIMIT %s) RETURNING {names}",
            [*where_params, limit],
        )
        rows = cursor.fetchall()
        if rows:
            marks = ", ".join(["%s"] * (len(columns) + 1))
            cursor.executemany(
                f"INSERT INTO {log} ({names}, logged_at) VALUES ({marks})",  # noqa: S608
                [[*row, sql_value(now)] for row in rows],
            )
    return len(rows)


def log_partitions_ensure(*, first: dt.datetime, months: int) -> list[str]:
    return []  # a plain table: nothing to partition


def log_partitions() -> list[str]:
    return []


# A plain table has no monthly partitions, so nothing is ever due for the archive; the three below
# are never reached and answer a name as PostgreSQL would answer a partition that does not exist.


def log_partition_months() -> dict[str, dt.datetime]:
    return {}


def _no_partition(name: str) -> LookupError:
    return LookupError(f"{name}: the SMS log is a plain table on this database, it has no partitions")


def log_partition_count(*, name: str) -> int:
    raise _no_partition(name)


def log_partition_export(*, name: str, path: Path) -> tuple[int, str]:
    raise _no_partition(name)


def log_partition_drop(*, name: str) -> None:
    raise _no_partition(name)
