"""The outbox is a queue: settled messages leave it for the log (`MessageLog`).

A message moves once nothing more will happen to it in the outbox: delivered, failed, rejected or
cancelled (after SMS_LOG_GRACE_SECONDS, so a screen that just showed it still finds it where it
was), or sent with no final report after SMS_LOG_UNREPORTED_SECONDS. A sent message not counted
yet (a lost worker) waits for the sweep to count it. Each pass moves rows in one statement per
chunk (PostgreSQL; one transaction elsewhere): a row is in the outbox or in the log, never both,
never neither, whatever kills the mover. A late delivery report for a logged message still
settles it there (`log_reports_apply`).

On PostgreSQL the log is partitioned by (UTC) month of `created_at`; `log_partitions_ensure` makes
the coming months' partitions ahead (beat, `manage.py sms_log_partitions`, and after every migrate),
and `log_partitions_archive` exports the months past SMS_LOG_MONTHS to files and drops them
(docs/partitioning.md, "SMS log").
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from kplc_sts import clock
from kplc_sts.db import by_vendor, sql_value
from kplc_sts.partitions import (
    archive_failure_cleanup,
    archive_file_publish,
    archive_file_set_aside,
    archive_partial_path,
    archive_path,
    archive_run_lock,
)

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
LOG_TABLE = MessageLog._meta.db_table


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


def report_match_since(now: dt.datetime) -> dt.datetime:
    """The sweeps look for the messages of unapplied reports received from this moment on; an
    older one is given up on (SMS_REPORT_MATCH_SECONDS): its message went to another application,
    or to an archive, and looking again on every pass would only grow the pass."""
    return now - dt.timedelta(seconds=settings.SMS_REPORT_MATCH_SECONDS)


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
        # Only recent ones (SMS_REPORT_MATCH_SECONDS): older unmatched reports are another
        # application's or an archived message's, and would fill the pass's `limit` for ever.
        reports = reports.filter(applied_at__isnull=True, received_at__gte=report_match_since(clock.now()))
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
        # Never a month past retention: its partition is the archive's, which holds it in SHARE
        # mode while it exports and then waits on the parent to DETACH; a report locking a row in
        # it meanwhile would deadlock with the archive. Such a month is past disputes anyway; a
        # constant bound also lets the planner leave those partitions out (and unlocked).
        logged = list(
            MessageLog.objects.select_for_update()
            .filter(provider_message_id__in=sorted(found), created_at__gte=log_archive_cutoff(now=now))
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


def _utc_month(at: dt.datetime, add: int = 0) -> dt.datetime:
    """The start of the UTC month `add` months after the one holding `at` (the log's partition unit)."""
    utc = at.astimezone(dt.UTC)
    index = utc.year * 12 + utc.month - 1 + add
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class LogArchive:
    """One monthly partition of the log archived, or in a dry run to be: [month, end) in UTC."""

    partition: str
    month: dt.datetime
    end: dt.datetime
    rows: int
    path: str = ""
    sha256: str = ""
    size_bytes: int = 0
    dry_run: bool = False

    @property
    def table(self) -> str:
        return LOG_TABLE


def log_archive_cutoff(*, now: dt.datetime | None = None) -> dt.datetime:
    """Log months starting before this (UTC) are past retention: SMS_LOG_MONTHS months are kept,
    the current one included."""
    return _utc_month(now or clock.now(), 1 - settings.SMS_LOG_MONTHS)


def log_partitions_due(*, now: dt.datetime | None = None) -> list[tuple[str, dt.datetime]]:
    """The log's monthly partitions whose whole month ends before the cutoff, oldest first, as
    (name, UTC month). Never the DEFAULT partition; nothing on SQLite (a plain table)."""
    cutoff = log_archive_cutoff(now=now)
    months = statements.log_partition_months()
    return sorted(((name, month) for name, month in months.items() if month < cutoff), key=lambda item: item[1])


def log_partitions_archive(
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    record: Callable[[LogArchive], None] | None = None,
) -> list[LogArchive]:
    """Archive every log partition past SMS_LOG_MONTHS, oldest first, each in its own transaction:
    export it to ARCHIVE_DIR/sms_messagelog/<partition>.csv.gz (written as .partial, renamed once
    proven), prove the file (rows re-read from it == rows in the partition, SHA-256), call
    `record(archive)`, then detach and drop the partition. On any failure (a count that disagrees,
    `record` raising, DETACH timing out) that partition stays, its files are removed, and the
    error is raised; months archived before it stay archived. One run at a time (ArchiveBusy
    otherwise); an archive file is never overwritten: one found for a partition that still exists
    was left by a run that died before its commit, and is set aside. `dry_run` only counts.

    Who records: the durable record of an archive (`tokens.models.ArchiveRecord`, beside the vend
    history's) belongs to an app above sms, which sms may not import. So the caller passes
    `record`, called inside the transaction that drops the partition: if it cannot write the
    record, the partition is not dropped, and a partition is never dropped unrecorded. A real run
    without `record` is refused (`tokens.services.history.sms_log_archive` is the one that passes
    it, for `manage.py archive_partitions` and the daily beat task)."""
    if dry_run:
        return [
            LogArchive(name, month, _utc_month(month, 1), statements.log_partition_count(name=name), dry_run=True)
            for name, month in log_partitions_due(now=now)
        ]
    if record is None:
        raise TypeError("log_partitions_archive needs `record`: a partition is never dropped unrecorded")
    done = []
    with archive_run_lock():
        for name, month in log_partitions_due(now=now):
            archive = _log_partition_archive(name, month, record)
            # Logged as each is done: a later month's failure must not hide the ones already dropped.
            logger.info("SMS log archived %s: %d rows to %s (sha256 %s), partition dropped", archive.partition,
                        archive.rows, archive.path, archive.sha256)  # fmt: skip
            done.append(archive)
    return done


def _log_partition_archive(name: str, month: dt.datetime, record: Callable[[LogArchive], None]) -> LogArchive:
    if name == f"{LOG_TABLE}_default":
        raise ValueError("the DEFAULT partition holds no one month: it is never archived")
    path = archive_path(LOG_TABLE, name)
    partial = archive_partial_path(path)
    archive_file_set_aside(path)
    try:
        with transaction.atomic():
            partial.parent.mkdir(parents=True, exist_ok=True)
            rows, sha256 = statements.log_partition_export(name=name, path=partial)
            archive_file_publish(partial, path)
            archive = LogArchive(name, month, _utc_month(month, 1), rows, str(path), sha256, path.stat().st_size)
            record(archive)
            statements.log_partition_drop(name=name)
    except BaseException:
        archive_failure_cleanup({name: (partial, path)})
        raise
    return archive
