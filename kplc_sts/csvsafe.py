"""The one spreadsheet-formula neutraliser for every CSV the project writes.

A cell starting with = + - @ (or a tab/CR, which some spreadsheets skip before reading a formula) is
run as a formula when the file is opened: `=cmd|' /C calc'!A0`, `@SUM(A1)`, `=HYPERLINK(...)`. Such
cells get a leading apostrophe, which spreadsheets show as text. Plain numbers and phone numbers
(+254712345678, -5) are left alone. The dashboard exports and the import's rejects report use it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

_NUMBERISH = re.compile(r"[+-]?[0-9][0-9 .]*")
_TRIGGERS = "=@\t\r"


def csv_safe(value: Any) -> Any:
    """One cell, neutralised."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat(timespec="seconds") if timezone.is_aware(value) else value
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value)
    if isinstance(value, str) and value:
        if value[0] in _TRIGGERS or (value[0] in "+-" and not _NUMBERISH.fullmatch(value)):
            return "'" + value
    return value


def csv_safe_row(row: Iterable[Any]) -> list[Any]:
    return [csv_safe(value) for value in row]


class SafeCsvWriter:
    """csv.writer with every cell neutralised."""

    def __init__(self, out: Any, **kwargs: Any) -> None:
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow(csv_safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self._writer.writerow(csv_safe_row(row))
