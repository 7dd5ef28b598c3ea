"""The outbox is a queue: settled messages leave it for the log (`MessageLog`).

A message moves once nothing more will happen to it in the outbox: delivered, failed, rejected or
cancelled (after SMS_LOG_GRACE_SECONDS, so a screen that just showed it still finds it where it
was), or sent with no final report after SMS_LOG_UNREPORTED_SECONDS. A sent message not counted
yet (a lost worker) waits for the sweep to count it. Each pass moves rows in one statement per
chunk (PostgreSQL; one transaction elsewhere): a row is in the outbox or in the log, never both,
never neither, whatever kills the mover. A late delivery report for a logged message still
settles it there (`log_reports_apply`).

On PostgreSQL the log is partitioned by month of `created_at`; `log_partitions_ensure` makes the
coming months' partitions ahead (beat, `manage.py sms_log_partitions`, and after every migrate).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction

from kplc_sts import clock
from kplc_sts.db import by_vendor, sql_value

from .. import _pg, _portable
from ..events import codes_delivered
from ..models import REPORT_FINAL_STATUS as REPORT_STATUS
from ..models import DeliveryReport, Message, MessageLog
from ..tallies import tally_add

logger = logging.getLogger(__name__)

Status = Message.Status
statements = by_vendor(pg=_pg, portable=_portable)
# Every column the outbox and the log share, in the outbox's order (the log adds logged_at).
_COLUMNS = [str(field.column) for field in Message._meta.concrete_fields]
_SETTLED = (Status.DELIVERED, Status.FAILED, Status.REJECTED, Status.CANCELLED)


def _settled_where(now: dt.datetime) -> tuple[str, list[object]]:
    grace = now - dt.timedelta(seconds=settings.SMS_LOG_GRACE_SECONDS)
    unreported = now - dt.timedelta(seconds=settings.SMS_LOG_UNREPORTED_SECONDS)
    marks = ", ".join(["%s"] * len(_SETTLED))
    return (
        f"((status IN ({marks}) AND COALESCE(delivered_at, created_at) < %s) OR (status = %s AND sent_at < %s)) "
        "AND (sent_at IS NULL OR sent_counted = %s)",
        [*_SETTLED, sql_value(grace), Status.SENT, sql_value(unreported), True],
    )


def messages_log_settled(
    *, now: dt.datetime | None = None, chunk: int | None = None, time_budget: float | None = None
) -> int:
    """Move the settled messages out of the outbox into the log, a chunk per statement, until none
    is left or `time_budget` wall seconds have passed. Returns the messages moved."""
    now = now or clock.now()
    chunk = chunk or settings.SMS_LOG_MOVE_CHUNK
    budget = settings.SMS_LOG_MOVE_TIME_BUDGET if time_budget is None else time_budget
    where_sql, where_params = _settled_where(now)
    started, moved = time.monotonic(), 0
    while True:
        count = statements.messages_move_settled(
            where_sql=where_sql, where_params=where_params, columns=_COLUMNS, limit=chunk, now=now
        )
        moved += count
        if count < chunk or time.monotonic() - started > budget:
            return moved


def log_reports_apply(*, provider_message_ids: Sequence[str] | None = None, limit: int = 5000) -> int:
    """Settle logged messages (moved as sent, unreported) whose final report came late: the log
    row takes the final status and the batch's tally counts it, once. With no ids, the sweep's
    pass over final reports still unapplied. Returns the messages settled."""
    reports = DeliveryReport.objects.filter(status__in=list(REPORT_STATUS))
    if provider_message_ids is not None:
        if not provider_message_ids:
            return 0
        reports = reports.filter(provider_message_id__in=list(provider_message_ids))
    else:
        reports = reports.filter(applied_at__isnull=True)
    found = {
        pid: (status, reason)
        for pid, status, reason in reports.order_by("pk").values_list(
            "provider_message_id", "status", "failure_reason"
        )[:limit]
    }
    if not found:
        return 0
    now = clock.now()
    settled = 0
    with transaction.atomic():
        logged = list(
            MessageLog.objects.select_for_update()
            .filter(provider_message_id__in=sorted(found))
            .order_by("pk")
            .values_list("pk", "created_at", "provider_message_id", "status", "batch_id", "purpose", "meter_id")
        )
        codes_meters: list[int] = []
        for pk, created_at, pid, status, batch_id, purpose, meter_id in logged:
            report_status, reason = found[str(pid)]
            final = REPORT_STATUS[report_status]
            if status == Status.SENT:
                # created_at names the partition: the update goes to one partition only.
                MessageLog.objects.filter(pk=pk, created_at=created_at, status=Status.SENT).update(
                    status=final, failure_reason="" if final == Status.DELIVERED else reason, delivered_at=now
                )
                tally_add(batch_id, **({"delivered": 1} if final == Status.DELIVERED else {"failed": 1}))
                settled += 1
                if final == Status.DELIVERED and purpose == Message.Purpose.CODES and meter_id is not None:
                    codes_meters.append(meter_id)
        if codes_meters:
            codes_delivered.send(sender=Message, meter_ids=codes_meters, at=now)
        if logged:
            DeliveryReport.objects.filter(
                provider_message_id__in=[row[2] for row in logged], applied_at__isnull=True
            ).update(applied_at=now)
    if settled:
        logger.info("%d logged SMS settled by late delivery reports", settled)
    return settled


def log_partitions_ensure(*, now: dt.datetime | None = None, months_ahead: int | None = None) -> list[str]:
    """Make the log's partitions for this month and the next `months_ahead` (SMS_LOG_PARTITIONS_AHEAD)
    that do not exist yet (PostgreSQL; nothing elsewhere). Safe to run any number of times."""
    now = now or clock.now()
    ahead = settings.SMS_LOG_PARTITIONS_AHEAD if months_ahead is None else months_ahead
    made = statements.log_partitions_ensure(first=now, months=ahead + 1)
    if made:
        logger.info("SMS log partitions made: %s", ", ".join(made))
    return list(made)


def log_partitions() -> list[str]:
    """The log's partitions, oldest first, the DEFAULT one last (empty on SQLite)."""
    return list(statements.log_partitions())
