"""The meter register: bulk import of the utility's CSV export.

The export holds 7.4 million rows, so the import never holds the file in memory. Rows are read
and validated one at a time (`meters.register_csv`); on PostgreSQL the good ones stream through
COPY into a temporary staging table, duplicates within the file are found there in SQL, and one
set-based INSERT ... ON CONFLICT upserts them into the register (`meters._pg`). Other databases
(SQLite, the embedded demo) take the same validation and load in chunks (`meters._portable`).

Everything happens in one transaction: a file that fails half way leaves the register untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from audit.services import audit_record
from kplc_sts.db import by_vendor

from . import _pg, _portable
from .events import register_imported
from .models import Meter
from .register_csv import (
    HEADER,
    REJECTS_HEADER,
    MeterImportError,
    Rejects,
    default_rejects_path,
    meter_row_validate,
    register_csv_open,
)

__all__ = [
    "HEADER",
    "REJECTS_HEADER",
    "MeterImportError",
    "MeterImportResult",
    "default_rejects_path",
    "meter_import",
    "meter_row_validate",
]

statements = by_vendor(pg=_pg, portable=_portable)


@dataclass(frozen=True)
class MeterImportResult:
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    seconds: float
    rejects_path: Path | None  # None when no row was rejected


def meter_import(
    *,
    path: Path,
    rejects_path: Path | None = None,
    actor_label: str = "system",
    progress: Callable[[int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> MeterImportResult:
    """Load the utility's register export; inserts new meters and updates known ones.

    `progress` is called with the number of bytes read so far, `notice` with phase messages.
    Raises MeterImportError when the file cannot be imported at all; bad rows are written to
    `rejects_path` (default: FILE.rejects.csv beside the input) as line,meter_number,reason.
    """
    started = time.monotonic()
    path = Path(path)
    rejects_path = Path(rejects_path) if rejects_path else default_rejects_path(path)
    text, reader = register_csv_open(path)
    rejects = Rejects()
    counter = [0]
    try:
        # A leftover report from an earlier run would describe the wrong file.
        rejects_path.unlink(missing_ok=True)
        with transaction.atomic():
            inserted, updated, unchanged, duplicates = statements.register_rows_load(
                reader=reader,
                text=text,
                rejects=rejects,
                counter=counter,
                progress=progress,
                notice=notice or (lambda message: None),
                rejects_path=rejects_path,
            )
            rejected = rejects.count + duplicates
            seconds = time.monotonic() - started
            audit_record(
                action="meters.imported",
                actor_label=actor_label,
                object_type=Meter._meta.label_lower,
                file=str(path),
                rows_read=counter[0],
                inserted=inserted,
                updated=updated,
                unchanged=unchanged,
                rejected=rejected,
                seconds=round(seconds, 1),
            )
            # Aggregates kept by the apps above (campaign segments and targets) follow the register,
            # in the same transaction: they listen for this signal.
            register_imported.send(sender=Meter)
    except BaseException:
        rejects_path.unlink(missing_ok=True)  # nothing was loaded, so no report either
        raise
    finally:
        text.close()
        rejects.close()
    return MeterImportResult(
        rows_read=counter[0],
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        rejected=rejected,
        seconds=time.monotonic() - started,
        rejects_path=rejects_path if rejected else None,
    )
