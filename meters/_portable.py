"""The register load on any database (SQLite: the embedded demo): the same validation, chunked
bulk_create / bulk_update. Same function and signature as `meters._pg.register_rows_load`."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

from kplc_sts import clock

from .models import Meter
from .register_csv import INT_FIELDS, REGISTER_FIELDS, Rejects, rejects_write, valid_rows

_SQLITE_CHUNK = 2000
_UPDATABLE = [field for field in REGISTER_FIELDS if field != "meter_number"]


def register_rows_load(
    *,
    reader: Iterator[list[str]],
    text: io.TextIOWrapper,
    rejects: Rejects,
    counter: list[int],
    progress: Callable[[int], None] | None,
    notice: Callable[[str], None],
    rejects_path: Path,
) -> tuple[int, int, int, int]:
    """Load the valid rows of `reader` into the register; returns (inserted, updated, unchanged,
    duplicates). Bad rows go to `rejects`, the report to `rejects_path`; counter[0] = rows read."""
    # The demo register is small; the first line of each meter number is kept in memory here.
    first_lines: dict[str, int] = {}
    duplicate_rejects = Rejects()
    inserted = updated = unchanged = 0
    chunk: list[tuple] = []
    now = clock.now()

    def flush() -> None:
        nonlocal inserted, updated, unchanged
        existing = {meter.meter_number: meter for meter in Meter.objects.filter(meter_number__in=[r[0] for r in chunk])}
        to_create, to_update = [], []
        for row in chunk:
            values = {
                field: (int(value) if field in INT_FIELDS else value)
                for field, value in zip(REGISTER_FIELDS, row, strict=True)
            }
            meter = existing.get(str(values["meter_number"]))
            if meter is None:
                to_create.append(Meter(**values, created_at=now, updated_at=now))
            elif any(getattr(meter, field) != values[field] for field in _UPDATABLE):
                for field in _UPDATABLE:
                    setattr(meter, field, values[field])
                meter.updated_at = now
                to_update.append(meter)
            else:
                unchanged += 1
        Meter.objects.bulk_create(to_create)
        Meter.objects.bulk_update(to_update, [*_UPDATABLE, "updated_at"])
        inserted += len(to_create)
        updated += len(to_update)
        chunk.clear()

    for line, row in valid_rows(reader, text, rejects, counter, progress):
        first = first_lines.setdefault(row[0], line)
        if first != line:
            duplicate_rejects.add(line, row[0], f"duplicate of line {first}")
            continue
        chunk.append(row)
        if len(chunk) >= _SQLITE_CHUNK:
            flush()
    if chunk:
        flush()
    if rejects.count or duplicate_rejects.count:
        rejects_write(rejects_path, [rejects.rows(), duplicate_rejects.rows()])
    duplicate_rejects.close()
    return inserted, updated, unchanged, duplicate_rejects.count
