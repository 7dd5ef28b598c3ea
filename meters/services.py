"""The meter register: bulk import of the utility's CSV export.

The export holds 7.4 million rows, so the import never holds the file in memory. Rows are read
and validated one at a time in Python; on PostgreSQL the good ones stream through COPY into a
temporary staging table, duplicates within the file are found there in SQL, and one set-based
INSERT ... ON CONFLICT upserts them into the register. SQLite (the embedded demo) takes the same
validation and loads in chunks with bulk_create/bulk_update.

Everything happens in one transaction: a file that fails half way leaves the register untouched.
"""

from __future__ import annotations

import csv
import heapq
import io
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from audit.services import audit_record
from kplc_sts import clock
from kplc_sts.csvsafe import SafeCsvWriter
from tokens.sts import luhn_check_digit

from .events import register_imported
from .models import Meter
from .phones import InvalidPhoneNumber, normalize_kenyan_phone

HEADER = (
    "meter_number",
    "sgc",
    "ti",
    "krn",
    "kt",
    "ea",
    "dkga",
    "base_date",
    "ken",
    "account_number",
    "customer_name",
    "phone",
    "region",
)
REJECTS_HEADER = ("line", "meter_number", "reason")

# IIN that goes with each meter number length (IEC 62055-41: 11-digit DRNs use 600727, 13-digit 0000).
_IIN_FOR_LENGTH = {11: "600727", 13: "0000"}
_EA = {"07", "09", "11"}
_DKGA = {"02", "04"}
_BASE_DATES = {"1993", "2014", "2035"}
_KT = {"0", "1", "2", "3"}
_KRN = {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
_MAX_ACCOUNT: int = Meter._meta.get_field("account_number").max_length or 0
_MAX_NAME: int = Meter._meta.get_field("customer_name").max_length or 0
_MAX_REGION: int = Meter._meta.get_field("region").max_length or 0
# Columns of the register an import owns. status and key_state are campaign state: never imported.
REGISTER_FIELDS = ("meter_number", "iin", *HEADER[1:])
_INT_FIELDS = frozenset({"ti", "krn", "kt", "base_date", "ken"})
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_BUFFER = 1 << 20  # bytes per read() from psycopg2: fewer round trips than its 8 KiB default
_PROGRESS_EVERY = 8192  # rows between progress callbacks
_SQLITE_CHUNK = 2000


class MeterImportError(Exception):
    """The file cannot be imported at all (missing, unreadable, wrong header)."""


@dataclass(frozen=True)
class MeterImportResult:
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    seconds: float
    rejects_path: Path | None  # None when no row was rejected


class _Rejects:
    """Validation rejects in line order, spooled to disk so memory stays flat."""

    def __init__(self) -> None:
        self.count = 0
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
        self._writer = csv.writer(self._spool)

    def add(self, line: int, meter_number: str, reason: str) -> None:
        self.count += 1
        self._writer.writerow((line, meter_number[:40], reason[:300]))  # a reason may quote a huge cell

    def rows(self) -> Iterator[tuple[int, str, str]]:
        self._spool.seek(0)
        for line, meter_number, reason in csv.reader(self._spool):
            yield int(line), meter_number, reason

    def close(self) -> None:
        self._spool.close()


def default_rejects_path(path: Path) -> Path:
    """meters.csv -> meters.rejects.csv, next to the input."""
    return path.with_name(f"{path.stem}.rejects.csv")


def meter_row_validate(fields: list[str]) -> tuple | str:  # noqa: C901 - flat on purpose: runs per row, 7.4 M times
    """One CSV row -> the register columns (REGISTER_FIELDS order, ints as str) or a reject reason.

    Written for speed (7.4 million calls): plain comparisons against sets, no regexes except the
    phone pattern.
    """
    if len(fields) != 13:
        return f"expected 13 fields, got {len(fields)}"
    number, sgc, ti, krn, kt, ea, dkga, base_date, ken, account, name, phone, region = fields
    number = number.strip()
    length = len(number)
    if length not in _IIN_FOR_LENGTH or not number.isdigit() or not number.isascii():
        return "meter number must be 11 or 13 digits"
    check = luhn_check_digit(number[:-1])
    if ord(number[-1]) - 48 != check:
        return f"bad Luhn check digit (expected {check})"
    sgc = sgc.strip()
    if len(sgc) != 6 or not sgc.isdigit() or not sgc.isascii():
        return f"SGC must be 6 digits, got {sgc!r}"
    ti = ti.strip()
    if not (0 < len(ti) <= 2 and ti.isdigit() and ti.isascii()):
        return f"tariff index must be 0..99, got {ti!r}"
    krn = krn.strip()
    if krn not in _KRN:
        return f"KRN must be 1..9, got {krn!r}"
    kt = kt.strip()
    if kt not in _KT:
        return f"key type must be 0..3, got {kt!r}"
    ea = ea.strip().zfill(2)  # spreadsheets drop the leading zero of "07"
    if ea not in _EA:
        return f"unknown EA {ea!r}"
    dkga = dkga.strip().zfill(2)
    if dkga not in _DKGA:
        return f"unknown DKGA {dkga!r}"
    base_date = base_date.strip()
    if base_date not in _BASE_DATES:
        return f"bad base date {base_date!r} (1993, 2014 or 2035)"
    ken = ken.strip() or "255"
    if not (len(ken) <= 3 and ken.isdigit() and ken.isascii() and int(ken) <= 255):
        return f"KEN must be 0..255, got {ken!r}"
    phone = phone.strip()
    if phone:
        try:
            phone = normalize_kenyan_phone(phone)
        except InvalidPhoneNumber:
            return f"malformed phone {phone!r}"
    account, name, region = account.strip(), name.strip(), region.strip()
    if "\ufffd" in account or "\ufffd" in name or "\ufffd" in region:
        return "text is not valid UTF-8"
    if len(account) > _MAX_ACCOUNT:
        return f"account number longer than {_MAX_ACCOUNT} characters"
    if len(name) > _MAX_NAME:
        return f"customer name longer than {_MAX_NAME} characters"
    if len(region) > _MAX_REGION:
        return f"region longer than {_MAX_REGION} characters"
    return (
        number,
        _IIN_FOR_LENGTH[length],
        sgc,
        str(int(ti)),
        krn,
        kt,
        ea,
        dkga,
        base_date,
        str(int(ken)),
        account,
        name,
        phone,
        region,
    )


def _open_csv(path: Path) -> tuple[io.TextIOWrapper, Iterator[list[str]]]:
    """Open the export and check its header; MeterImportError when it cannot be imported at all."""
    try:
        raw = open(path, "rb", buffering=0)
    except OSError as exc:
        raise MeterImportError(f"cannot read {path}: {exc.strerror}") from None
    # Undecodable bytes become U+FFFD and reject only their row, not the whole file.
    text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8-sig", errors="replace", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except (OSError, csv.Error) as exc:
        text.close()
        raise MeterImportError(f"cannot read {path}: {exc}") from None
    if header is None:
        text.close()
        raise MeterImportError(f"{path} is empty: expected the header {','.join(HEADER)}")
    if tuple(column.strip().lower() for column in header) != HEADER:
        text.close()
        raise MeterImportError(f"{path} has the wrong header: expected {','.join(HEADER)}")
    return text, reader


def _valid_rows(
    reader: Any,  # a csv reader: an iterator of rows with .line_num
    text: io.TextIOWrapper,
    rejects: _Rejects,
    counter: list[int],
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[int, tuple]]:
    """(line, validated row) for every good row; bad rows go to `rejects`. counter[0] = rows read."""
    raw: Any = getattr(
        text.buffer, "raw", text.buffer
    )  # its position is the number of bytes consumed, read-ahead included
    rows = 0
    previous = reader.line_num
    try:
        while True:
            try:
                for fields in reader:
                    # A quoted field may span lines: report the line the record starts on.
                    line = previous + 1
                    previous = reader.line_num
                    if not fields:
                        continue  # blank line
                    rows += 1
                    result = meter_row_validate(fields)
                    if isinstance(result, str):
                        rejects.add(line, fields[0].strip(), result)
                    else:
                        yield line, result
                    if progress is not None and rows % _PROGRESS_EVERY == 0:
                        progress(raw.tell())
                break
            except csv.Error as exc:
                if "field larger than field limit" not in str(exc):
                    # A malformed quote can swallow the rest of the file: refuse it rather than guess.
                    raise MeterImportError(f"line {reader.line_num}: {exc}") from None
                # One oversized field (no register column is anywhere near the limit): the reader drops
                # the rest of that line, so the row is rejected and the next line reads normally.
                rows += 1
                rejects.add(previous + 1, "", f"a field is longer than {csv.field_size_limit()} characters")
                previous = reader.line_num
    finally:
        counter[0] = rows
    if progress is not None:
        progress(raw.tell())


def _line_of(reject: tuple[int, str, str]) -> int:
    return reject[0]


def _write_rejects(path: Path, sorted_streams: Sequence[Iterator[tuple[int, str, str]]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = SafeCsvWriter(out)  # rejected cells are the file's own text: `=cmd|...` must stay text
        writer.writerow(REJECTS_HEADER)
        merged: Iterator[tuple[int, str, str]] = heapq.merge(*sorted_streams, key=_line_of)
        writer.writerows(merged)


# --- PostgreSQL: COPY into a staging table, dedupe and upsert in SQL ---------------------------


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


def _import_postgresql(
    reader: Iterator[list[str]],
    text: io.TextIOWrapper,
    rejects: _Rejects,
    counter: list[int],
    progress: Callable[[int], None] | None,
    notice: Callable[[str], None],
    rejects_path: Path,
) -> tuple[int, int, int, int]:
    """Returns (inserted, updated, unchanged, duplicates)."""
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
            _CopySource(_valid_rows(reader, text, rejects, counter, progress)),
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
            _write_rejects(rejects_path, [rejects.rows(), duplicate_rows()])
        else:
            first = next(duplicate_rows(), None)
            if first is not None:
                _write_rejects(rejects_path, [iter([first]), duplicate_rows()])
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


# --- SQLite (embedded demo): the same validation, chunked bulk_create / bulk_update -----------


def _import_sqlite(
    reader: Iterator[list[str]],
    text: io.TextIOWrapper,
    rejects: _Rejects,
    counter: list[int],
    progress: Callable[[int], None] | None,
    rejects_path: Path,
) -> tuple[int, int, int, int]:
    # The demo register is small; the first line of each meter number is kept in memory here.
    first_lines: dict[str, int] = {}
    duplicate_rejects = _Rejects()
    inserted = updated = unchanged = 0
    chunk: list[tuple] = []
    now = clock.now()

    def flush() -> None:
        nonlocal inserted, updated, unchanged
        existing = {meter.meter_number: meter for meter in Meter.objects.filter(meter_number__in=[r[0] for r in chunk])}
        to_create, to_update = [], []
        for row in chunk:
            values = {
                field: (int(value) if field in _INT_FIELDS else value)
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

    for line, row in _valid_rows(reader, text, rejects, counter, progress):
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
        _write_rejects(rejects_path, [rejects.rows(), duplicate_rejects.rows()])
    duplicate_rejects.close()
    return inserted, updated, unchanged, duplicate_rejects.count


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
    text, reader = _open_csv(path)
    rejects = _Rejects()
    counter = [0]
    try:
        # A leftover report from an earlier run would describe the wrong file.
        rejects_path.unlink(missing_ok=True)
        with transaction.atomic():
            if connection.vendor == "postgresql":
                inserted, updated, unchanged, duplicates = _import_postgresql(
                    reader, text, rejects, counter, progress, notice or (lambda message: None), rejects_path
                )
            else:
                inserted, updated, unchanged, duplicates = _import_sqlite(
                    reader, text, rejects, counter, progress, rejects_path
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
