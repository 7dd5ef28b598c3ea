"""The vend history's life: monthly partitions made ahead, response bodies compacted after the
replay window, months past retention archived to files and dropped (docs/partitioning.md).

PostgreSQL holds the partitions; on SQLite (the demo) partitions and archives do not exist and
those functions do nothing, while compaction works the same on both.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from kplc_sts import clock
from kplc_sts.db import is_postgres

from .. import partitioning
from ..models import ArchiveRecord, Vend, VendReference
from ..partitioning import HISTORY_TABLES, VEND, HistoryTable

logger = logging.getLogger(__name__)

# How long the archive may wait for the brief exclusive lock DETACH takes on a busy parent table
# before it gives up (and retries on the next run) rather than queueing vends behind it.
DETACH_LOCK_TIMEOUT = "2s"


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
    nothing of that month is dropped, its files are removed, and the run fails. `dry_run` only counts."""
    due = partitions_due(now=now)
    if dry_run:
        with connection.cursor() as cursor:
            return [
                ArchiveResult(table.table, name, month, partitioning.partition_count(cursor, name), dry_run=True)
                for table, name, month in due
            ]
    results: list[ArchiveResult] = []
    for month in sorted({month for _, _, month in due}):
        results.extend(_month_archive(month, [(table, name) for table, name, at in due if at == month]))
    return results


def _archive_path(table: HistoryTable, name: str) -> Path:
    return Path(settings.ARCHIVE_DIR) / table.table / f"{name}.csv.gz"


def _file_rows_and_digest(path: Path) -> tuple[int, str]:
    """Rows in the gzip CSV (header excluded, quoted newlines handled) and the file's SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    with gzip.open(path, "rt", newline="", encoding="utf-8") as text:
        reader = csv.reader(text)
        next(reader)  # the header
        rows = sum(1 for _ in reader)
    return rows, digest.hexdigest()


def _partition_export(cursor: Any, name: str, path: Path) -> tuple[int, str]:
    """COPY the partition into `path` (gzip CSV) and prove it: returns (rows, sha256)."""
    # Writers to the partition wait until the transaction ends (an old month gets none but a late
    # compaction); readers carry on. The count and the COPY see the same rows.
    partitioning.partition_lock_shared(cursor, name)
    rows = partitioning.partition_count(cursor, name)
    with gzip.open(path, "wb", compresslevel=6) as gz:
        text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
        partitioning.partition_copy_csv(cursor, name, text)
        text.flush()
        text.detach()
    with path.open("rb") as written:
        os.fsync(written.fileno())
    file_rows, sha256 = _file_rows_and_digest(path)
    if file_rows != rows:
        raise RuntimeError(f"{name}: {rows} rows in the partition, {file_rows} in {path}")
    return rows, sha256


def _month_archive(month: dt.datetime, partitions: list[tuple[HistoryTable, str]]) -> list[ArchiveResult]:
    end = partitioning.month_add(month, 1)
    partials = {name: _archive_path(table, name).with_suffix(".partial") for table, name in partitions}
    finals: list[Path] = []
    results = []
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            for table, name in partitions:
                partial = partials[name]
                partial.parent.mkdir(parents=True, exist_ok=True)
                rows, sha256 = _partition_export(cursor, name, partial)
                if table == VEND:
                    references = VendReference.objects.filter(created_at__gte=month, created_at__lt=end).delete()[0]
                    if references != rows:
                        raise RuntimeError(f"{name}: {rows} vends but {references} references in the month")
                path = _archive_path(table, name)
                partial.replace(path)
                finals.append(path)
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
            for table, name in partitions:
                partitioning.partition_detach_drop(cursor, table, name, lock_timeout=DETACH_LOCK_TIMEOUT)
    except BaseException:
        # Rolled back: the partitions stay, so this run's files must not look like an archive.
        for path in [*partials.values(), *finals]:
            path.unlink(missing_ok=True)
        raise
    for result in results:
        logger.info("archived %s: %d rows to %s (sha256 %s), partition dropped", result.partition, result.rows,
                    result.path, result.sha256)  # fmt: skip
    return results
