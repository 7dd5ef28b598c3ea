"""The utility's register export as rows: the header, one row's validation, the rejects report.

Shared by both loaders (`meters._pg`: COPY into a staging table; `meters._portable`: chunked ORM
writes): rows are read and validated one at a time, so the 7.4 million rows of a national export
never sit in memory, and every rejected row is reported with its line and reason.
"""

from __future__ import annotations

import csv
import heapq
import io
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kplc_sts.csvsafe import SafeCsvWriter
from tokens.sts import luhn_check_digit

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
INT_FIELDS = frozenset({"ti", "krn", "kt", "base_date", "ken"})
_PROGRESS_EVERY = 8192  # rows between progress callbacks


class MeterImportError(Exception):
    """The file cannot be imported at all (missing, unreadable, wrong header)."""


class Rejects:
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


def register_csv_open(path: Path) -> tuple[io.TextIOWrapper, Iterator[list[str]]]:
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


def valid_rows(
    reader: Any,  # a csv reader: an iterator of rows with .line_num
    text: io.TextIOWrapper,
    rejects: Rejects,
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


def rejects_write(path: Path, sorted_streams: Sequence[Iterator[tuple[int, str, str]]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = SafeCsvWriter(out)  # rejected cells are the file's own text: `=cmd|...` must stay text
        writer.writerow(REJECTS_HEADER)
        merged: Iterator[tuple[int, str, str]] = heapq.merge(*sorted_streams, key=_line_of)
        writer.writerows(merged)
