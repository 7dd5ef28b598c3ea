"""What archiving a PostgreSQL partition takes, whatever the table (docs/partitioning.md, "Retention
and archive"): export it to a gzip CSV file and prove the file, then detach and drop it.

Shared by the vend history (`tokens.services.history`) and the SMS log (`sms._pg`), hence here in
the project package, below every app. PostgreSQL only (COPY through psycopg2, DETACH PARTITION):
the callers reach these functions only on PostgreSQL. Partition names passed in are always made by
the project's own partition code, never taken from input, so they are spliced into the SQL as is.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from pathlib import Path
from typing import IO, Any

from django.conf import settings

# How long an archive may wait for the brief exclusive lock DETACH takes on a busy parent table
# before it gives up (and retries on the next run) rather than queue vends or SMS behind it.
DETACH_LOCK_TIMEOUT = "2s"


def archive_path(table: str, name: str) -> Path:
    """Where partition `name` of `table` is archived: ARCHIVE_DIR/<table>/<name>.csv.gz."""
    return Path(settings.ARCHIVE_DIR) / table / f"{name}.csv.gz"


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
