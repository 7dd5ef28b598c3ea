"""What archiving a PostgreSQL partition takes, whatever the table (docs/partitioning.md, "Retention
and archive"): export it to a gzip CSV file and prove the file, then detach and drop it.

Shared by the vend history (`tokens.services.history`) and the SMS log (`sms._pg`), hence here in
the project package, below every app. PostgreSQL only (COPY through psycopg2, DETACH PARTITION):
the callers reach these functions only on PostgreSQL. Partition names passed in are always made by
the project's own partition code, never taken from input, so they are spliced into the SQL as is.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import Error, connection

logger = logging.getLogger(__name__)

# How long an archive may wait for the brief exclusive lock DETACH takes on a busy parent table
# before it gives up (and retries on the next run) rather than queue vends or SMS behind it.
DETACH_LOCK_TIMEOUT = "2s"


# The session-level advisory lock key of an archive run ("kplcarch" as a bigint).
ARCHIVE_RUN_LOCK = int.from_bytes(b"kplcarch", "big")


class ArchiveBusy(RuntimeError):
    """Another archive run holds the run lock; this one archived nothing."""


@contextlib.contextmanager
def archive_run_lock() -> Iterator[None]:
    """One archive run at a time, on every host. Without it the daily beat task, a manual
    `archive_partitions` and a re-delivered task could copy the same partition at once, each
    publish the file, and one's clean-up remove the file the other had recorded and dropped the
    partition for. Session-level (pg_try_advisory_lock), so it spans a run's per-month
    transactions and goes with the connection if the process dies; ArchiveBusy if taken. Elsewhere
    than PostgreSQL the tables have no partitions and there is nothing to hold."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [ARCHIVE_RUN_LOCK])
        if not cursor.fetchone()[0]:
            raise ArchiveBusy("another archive run is in progress; this one archived nothing")
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ARCHIVE_RUN_LOCK])
        except Error:
            # The connection is gone, and the session's lock with it.
            logger.warning("archive run lock: could not unlock; the connection is gone", exc_info=True)


def archive_path(table: str, name: str) -> Path:
    """Where partition `name` of `table` is archived: ARCHIVE_DIR/<table>/<name>.csv.gz."""
    return Path(settings.ARCHIVE_DIR) / table / f"{name}.csv.gz"


def archive_partial_path(path: Path) -> Path:
    """Where the file is written before it is proven: never taken for an archive."""
    return path.with_name(path.name + ".partial")


def archive_file_set_aside(path: Path) -> Path | None:
    """Called under the run lock for a partition that still exists: a file at `path` is then what a
    run left that died between publishing the file and committing the partition's drop (the drop
    and the archive's record are one transaction, after the publish). It is renamed aside, not
    deleted, for an operator to look at, and the partition is archived afresh. Returns the new name."""
    if not path.exists():
        return None
    aside = path.with_name(f"{path.name}.stale-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(aside)
    logger.warning("archive: %s was left by a run that did not commit; moved to %s", path, aside)
    return aside


def archive_file_publish(partial: Path, path: Path) -> None:
    """Give the proven file its final name without ever replacing a file (a hard link fails if
    `path` exists, where a rename would overwrite), and make the name durable (fsync of the
    directory) before the caller commits the drop: a power cut must not keep the drop and lose the
    file's name."""
    os.link(partial, path)
    partial.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def archive_failure_cleanup(files: Mapping[str, tuple[Path, Path]]) -> None:
    """After an archive transaction failed, for {partition: (partial, final)}: a .partial is always
    removed; a published file only where the partition is seen to exist again (rolled back). When
    that cannot be seen (the connection broke, perhaps during a COMMIT that went through) the file
    stays: a stray file, which the next run sets aside, is better than a dropped partition whose
    recorded archive was deleted."""
    for partial, _ in files.values():
        partial.unlink(missing_ok=True)
    try:
        with connection.cursor() as cursor:
            present = [name for name in files if partition_exists(cursor, name)]
    except Error:
        logger.warning("archive: cannot tell whether %s rolled back; keeping its files", sorted(files), exc_info=True)
        return
    for name in present:
        files[name][1].unlink(missing_ok=True)


def partition_exists(cursor: Any, name: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    return bool(cursor.fetchone()[0])


def partition_count(cursor: Any, name: str) -> int:
    cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608 - our partition names, never input
    return int(cursor.fetchone()[0])


def partition_lock_shared(cursor: Any, name: str) -> None:
    """Hold off writers to the partition until the transaction ends; readers carry on."""
    cursor.execute(f"LOCK TABLE {name} IN SHARE MODE")


def partition_copy_csv(cursor: Any, name: str, out: IO[str]) -> None:
    """The partition's rows, in id order, as CSV with a header line, through psycopg2's COPY."""
    cursor.copy_expert(f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)", out)  # noqa: S608


def file_rows_and_digest(path: Path) -> tuple[int, str]:
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


def partition_export(cursor: Any, name: str, path: Path) -> tuple[int, str]:
    """COPY the partition into `path` (gzip CSV, fsync'd) and prove it: the rows re-read from the
    file must be the rows counted in the partition, or RuntimeError. Returns (rows, sha256). Run
    inside the transaction that then drops the partition, so nothing can change in between."""
    # Writers to the partition wait until the transaction ends (an old month gets none but a late
    # update); readers carry on. The count and the COPY see the same rows.
    partition_lock_shared(cursor, name)
    rows = partition_count(cursor, name)
    with gzip.open(path, "wb", compresslevel=6) as gz:
        text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
        partition_copy_csv(cursor, name, text)
        text.flush()
        text.detach()
    with path.open("rb") as written:
        os.fsync(written.fileno())
    file_rows, sha256 = file_rows_and_digest(path)
    if file_rows != rows:
        raise RuntimeError(f"{name}: {rows} rows in the partition, {file_rows} in {path}")
    return rows, sha256


def partition_detach_drop(cursor: Any, parent: str, name: str, *, lock_timeout: str = DETACH_LOCK_TIMEOUT) -> None:
    """Detach partition `name` from table `parent` and drop it. DETACH takes a brief exclusive lock
    on the parent (not CONCURRENTLY: that is refused while a default partition exists);
    `lock_timeout` makes it give up rather than queue the parent's writers behind it."""
    # Deferred foreign-key checks of rows written earlier in this transaction would block the DROP.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
    cursor.execute(f"ALTER TABLE {parent} DETACH PARTITION {name}")
    cursor.execute(f"DROP TABLE {name}")
