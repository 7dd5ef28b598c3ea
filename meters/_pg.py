"""The register load on PostgreSQL: COPY into a staging table, duplicates found and upserted in SQL.

Same function and signature as `meters._portable.register_rows_load`; `meters.services` picks one
through `kplc_sts.db.by_vendor`. COPY streams 7.4 million rows at flat memory (about a million rows
in 30 s, docs/benchmarks.md), where row-at-a-time writes would take an hour.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

from django.db import connection

from kplc_sts import clock

from .models import Meter
from .register_csv import REGISTER_FIELDS, Rejects, rejects_write, valid_rows

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_BUFFER = 1 << 20  # bytes per read() from psycopg2: fewer round trips than its 8 KiB default


class _CopySource:
    """A read()-able view of a row iterator, so psycopg2 can COPY it without a file on disk."""

    def __init__(self, rows: Iterator[tuple[int, tuple]]) -> None:
        self._rows = rows

    def read(self, size: int = -1) -> str:
        parts: list[str] = []
        total = 0
        for line, row in self._rows:
            text = "\t".join(row)
            # Free text may hold COPY's delimiters; escape only the rare rows that need it.
            if "\\" in text or "\n" in text or "\r" in text or text.count("\t") != 13:
                text = "\t".join(value.translate(_COPY_ESCAPES) for value in row)
            text = f"{line}\t{text}\n"
            parts.append(text)
            total += len(text)
            if 0 < size <= total:
                break
        return "".join(parts)


_STAGE_COLUMNS = ", ".join(REGISTER_FIELDS)
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
    table = Meter._meta.db_table
    now = clock.now()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")  # one import; a crash simply reruns it
        cursor.execute("SET LOCAL work_mem = '256MB'")  # the DISTINCT ON / window sorts stay in memory
        # TEMP: private to this session (two imports never collide), unlogged, dropped at commit.
        # An enclosing transaction (seed_demo, tests) may still hold an earlier import's table.
        cursor.execute("DROP TABLE IF EXISTS meter_import_stage")
        cursor.execute(
            """
            CREATE TEMP TABLE meter_import_stage (
                line bigint NOT NULL,
                meter_number text NOT NULL, iin text NOT NULL, sgc text NOT NULL,
                ti smallint NOT NULL, krn smallint NOT NULL, kt smallint NOT NULL,
                ea text NOT NULL, dkga text NOT NULL, base_date smallint NOT NULL, ken smallint NOT NULL,
                account_number text NOT NULL, customer_name text NOT NULL, phone text NOT NULL,
                region text NOT NULL
            ) ON COMMIT DROP
            """
        )
        cursor.copy_expert(
            f"COPY meter_import_stage (line, {_STAGE_COLUMNS}) FROM STDIN",
            _CopySource(valid_rows(reader, text, rejects, counter, progress)),
            _COPY_BUFFER,
        )
        notice("staged; checking duplicates and upserting")
        cursor.execute("ANALYZE meter_import_stage")

        # Duplicates in the file: the first occurrence wins, later ones are reported. A
        # server-side cursor streams them so even a file of duplicates needs no client memory.
        duplicates = connection.connection.cursor(name="meter_import_duplicates")
        duplicates.itersize = 10_000
        duplicates.execute(
            """
            SELECT line, meter_number, first_line FROM (
                SELECT line, meter_number, min(line) OVER (PARTITION BY meter_number) AS first_line
                FROM meter_import_stage
            ) ranked
            WHERE line <> first_line
            ORDER BY line
            """
        )
        duplicate_count = [0]

        def duplicate_rows() -> Iterator[tuple[int, str, str]]:
            for line, meter_number, first_line in duplicates:
                duplicate_count[0] += 1
                yield line, meter_number, f"duplicate of line {first_line}"

        if rejects.count:
            rejects_write(rejects_path, [rejects.rows(), duplicate_rows()])
        else:
            first = next(duplicate_rows(), None)
            if first is not None:
                rejects_write(rejects_path, [iter([first]), duplicate_rows()])
        duplicates.close()

        # Set-based upsert. status/key_state are campaign progress and are only set on insert.
        # Rows identical to what the register holds are skipped: a re-run rewrites nothing.
        assignments = ", ".join(f"{field} = EXCLUDED.{field}" for field in _UPDATABLE)
        changed = " OR ".join(f"{table}.{field} IS DISTINCT FROM EXCLUDED.{field}" for field in _UPDATABLE)
        cursor.execute(
            f"""
            WITH upserted AS (
                INSERT INTO {table} ({_STAGE_COLUMNS}, status, key_state, created_at, updated_at)
                SELECT DISTINCT ON (meter_number) {_STAGE_COLUMNS}, %s, %s, %s, %s
                FROM meter_import_stage
                ORDER BY meter_number, line
                ON CONFLICT (meter_number) DO UPDATE SET {assignments}, updated_at = EXCLUDED.updated_at
                WHERE {changed}
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
            """,  # noqa: S608 - identifiers come from the model, values are parameters
            [Meter.Status.ACTIVE, Meter.KeyState.OLD_KEY, now, now],
        )
        inserted, updated = cursor.fetchone()
        cursor.execute("DROP TABLE meter_import_stage")
    distinct = counter[0] - rejects.count - duplicate_count[0]
    return inserted, updated, distinct - inserted - updated, duplicate_count[0]
