"""The vend history's life: monthly partitions made ahead, response bodies compacted after the
replay window, months past retention archived to files and dropped (docs/partitioning.md).

PostgreSQL holds the partitions; on SQLite (the demo) partitions and archives do not exist and
those functions do nothing, while compaction works the same on both.

`partitions_archive_all` (the command and the daily beat task) archives the vend history and the
SMS log, whose archive `sms.services.log_partitions_archive` does and this module records (an
`ArchiveRecord` for each, like the vend history's: sms may not import tokens).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from kplc_sts import clock, partitions
from kplc_sts.db import is_postgres
from sms.services import LogArchive, log_partitions_archive

from .. import partitioning
from ..models import ArchiveRecord, Vend, VendReference
from ..partitioning import HISTORY_TABLES, VEND, HistoryTable

logger = logging.getLogger(__name__)


def partitions_ensure(*, now: dt.datetime | None = None, ahead: int | None = None) -> list[str]:
    """Create the monthly partitions from this month to `ahead` months on (default
    HISTORY_PARTITIONS_AHEAD_MONTHS), for every history table; rows of those months that waited in
    a default partition move in. Idempotent. Returns the partitions created."""
    if not is_postgres():
        return []
    now = now or clock.now()
    ahead = settings.HISTORY_PARTITIONS_AHEAD_MONTHS if ahead is None else ahead
    first = partitioning.month_start(now)
    created = []
    with connection.cursor() as cursor:
        for table in HISTORY_TABLES:
            for month in partitioning.months_between(first, partitioning.month_add(first, ahead)):
                with transaction.atomic():
                    if partitioning.partition_create(cursor, table, month):
                        created.append(partitioning.partition_name(table, month))
    if created:
        logger.info("history partitions created: %s", ", ".join(created))
    return created


def partitions_ensure_for(*, at: dt.datetime) -> list[str]:
    """The partitions of `at`'s month (a back-dated load or test); idempotent."""
    if not is_postgres():
        return []
    created = []
    with connection.cursor() as cursor, transaction.atomic():
        for table in HISTORY_TABLES:
            if partitioning.partition_create(cursor, table, partitioning.month_start(at)):
                created.append(partitioning.partition_name(table, partitioning.month_start(at)))
    return created


def vend_bodies_compact(*, now: dt.datetime | None = None, since: dt.datetime | None = None, batch: int = 2000) -> int:
    """Compact ('') the stored response of every vend older than the replay window. Walks
    created_at from `since` to the window's edge in batches of `batch` rows, each its own statement.
    The default `since`, one day before the edge, keeps the hourly run to the last day's rows (the
    earlier ones were compacted by earlier runs); a longer outage is caught up with an early `since`
    (`compact_vend_bodies --all`). Returns the vends compacted."""
    now = now or clock.now()
    edge = now - dt.timedelta(days=settings.VEND_REPLAY_DAYS)
    cursor_at = since or edge - dt.timedelta(days=1)
    done = 0
    while True:
        rows = list(
            Vend.objects.filter(created_at__gte=cursor_at, created_at__lt=edge)
            .exclude(response_body="")
            .order_by("created_at", "id")
            .values_list("id", "created_at")[:batch]
        )
        if not rows:
            return done
        # The created_at bounds let PostgreSQL prune to the batch's partitions.
        done += Vend.objects.filter(
            created_at__gte=rows[0][1], created_at__lte=rows[-1][1], pk__in=[vend_id for vend_id, _ in rows]
        ).update(response_body="")
        cursor_at = rows[-1][1]


@dataclass(frozen=True)
class ArchiveResult:
    table: str
    partition: str
    month: dt.datetime
    rows: int
    path: str = ""
    sha256: str = ""
    dry_run: bool = False


def archive_cutoff(*, now: dt.datetime | None = None) -> dt.datetime:
    """Months starting before this are past retention: VEND_HISTORY_MONTHS months are kept,
    the current one included."""
    return partitioning.month_add(partitioning.month_start(now or clock.now()), 1 - settings.VEND_HISTORY_MONTHS)


def partitions_due(*, now: dt.datetime | None = None) -> list[tuple[HistoryTable, str, dt.datetime]]:
    """The partitions past retention, oldest month first."""
    if not is_postgres():
        return []
    cutoff = archive_cutoff(now=now)
    due = []
    with connection.cursor() as cursor:
        for table in HISTORY_TABLES:
            for name, month in partitioning.partitions_list(cursor, table).items():
                if month < cutoff:
                    due.append((table, name, month))
    return sorted(due, key=lambda item: (item[2], item[0].table))


def partitions_archive(*, now: dt.datetime | None = None, dry_run: bool = False) -> list[ArchiveResult]:
    """Export every partition past retention to ARCHIVE_DIR/<table>/<partition>.csv.gz, prove each
    file (rows re-read from it == rows in the partition; SHA-256 recorded in ArchiveRecord), then
    detach and drop the partitions and delete the month's VendReference rows (as many as its vends).

    A month goes all at once (vends, tokens, digests in one transaction): if any count disagrees,
    nothing of that month is dropped, its files are removed, and the run fails. One run at a time
    (ArchiveBusy otherwise). `dry_run` only counts."""
    if dry_run:
        with connection.cursor() as cursor:
            return [
                ArchiveResult(table.table, name, month, partitions.partition_count(cursor, name), dry_run=True)
                for table, name, month in partitions_due(now=now)
            ]
    results: list[ArchiveResult] = []
    with partitions.archive_run_lock():
        due = partitions_due(now=now)  # under the lock: what another run archived is gone from it
        for month in sorted({month for _, _, month in due}):
            results.extend(_month_archive(month, [(table, name) for table, name, at in due if at == month]))
    return results


def _month_archive(month: dt.datetime, month_partitions: list[tuple[HistoryTable, str]]) -> list[ArchiveResult]:
    end = partitioning.month_add(month, 1)
    files: dict[str, tuple[Path, Path]] = {}
    for table, name in month_partitions:
        path = partitions.archive_path(table.table, name)
        files[name] = (partitions.archive_partial_path(path), path)
        partitions.archive_file_set_aside(path)
    results = []
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            for table, name in month_partitions:
                partial, path = files[name]
                partial.parent.mkdir(parents=True, exist_ok=True)
                rows, sha256 = partitions.partition_export(cursor, name, partial)
                if table == VEND:
                    references = VendReference.objects.filter(created_at__gte=month, created_at__lt=end).delete()[0]
                    if references != rows:
                        raise RuntimeError(f"{name}: {rows} vends but {references} references in the month")
                partitions.archive_file_publish(partial, path)
                ArchiveRecord.objects.create(
                    table=table.table,
                    partition=name,
                    range_start=month,
                    range_end=end,
                    rows=rows,
                    sha256=sha256,
                    path=str(path),
                    size_bytes=path.stat().st_size,
                    dropped_at=clock.now(),
                )
                results.append(ArchiveResult(table.table, name, month, rows, str(path), sha256))
            for table, name in month_partitions:
                partitions.partition_detach_drop(cursor, table.table, name)
    except BaseException:
        partitions.archive_failure_cleanup(files)
        raise
    for result in results:
        logger.info("archived %s: %d rows to %s (sha256 %s), partition dropped", result.partition, result.rows,
                    result.path, result.sha256)  # fmt: skip
    return results


def _sms_log_record(archive: LogArchive) -> None:
    ArchiveRecord.objects.create(
        table=archive.table,
        partition=archive.partition,
        range_start=archive.month,
        range_end=archive.end,
        rows=archive.rows,
        sha256=archive.sha256,
        path=archive.path,
        size_bytes=archive.size_bytes,
        dropped_at=clock.now(),
    )


def sms_log_archive(*, now: dt.datetime | None = None, dry_run: bool = False) -> list[ArchiveResult]:
    """The SMS log's months past SMS_LOG_MONTHS, archived by `sms.services.log_partitions_archive`,
    each recorded in an ArchiveRecord inside the transaction that drops its partition."""
    return [
        ArchiveResult(
            archive.table,
            archive.partition,
            archive.month,
            archive.rows,
            archive.path,
            archive.sha256,
            dry_run=archive.dry_run,
        )  # fmt: skip
        for archive in log_partitions_archive(now=now, dry_run=dry_run, record=_sms_log_record)
    ]


def partitions_archive_all(*, now: dt.datetime | None = None, dry_run: bool = False) -> list[ArchiveResult]:
    """Everything past retention: the vend history (`partitions_archive`), then the SMS log
    (`sms_log_archive`). The two are independent: a vend month that fails its checks must not keep
    the SMS log, personal data, past its retention, nor the other way round. So both run, and the
    first failure is raised after both did (what either archived stays archived, and logged)."""
    results: list[ArchiveResult] = []
    failure: Exception | None = None
    archives: tuple[Callable[..., list[ArchiveResult]], ...] = (partitions_archive, sms_log_archive)
    # One lock over both (each takes it again, which a session's advisory lock allows), so a busy
    # lock is reported once, before anything, instead of as two failures.
    with contextlib.nullcontext() if dry_run else partitions.archive_run_lock():
        for archive in archives:
            try:
                results.extend(archive(now=now, dry_run=dry_run))
            except Exception as error:
                logger.exception("%s failed", archive.__name__)
                failure = failure or error
    if failure is not None:
        raise failure
    return results
