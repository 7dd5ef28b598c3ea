"""Findings 4 and 9: the import's rejects CSV wrote formula cells as they were, and one 10 MB field
crashed the whole import with a raw traceback."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dashboard import services as dashboard_services
from kplc_sts.csvsafe import csv_safe, csv_safe_row
from meters.models import Meter
from meters.services import HEADER, meter_import
from tests.factories import luhn_complete

pytestmark = pytest.mark.django_db

FORMULAS = ["=cmd|' /C calc'!A0", "@SUM(A1)", "+cmd|x", "-2+3", '=HYPERLINK("http://x")', "\t=1+1"]


def _row(number: str, **fields: str) -> list[str]:
    values = {
        "meter_number": number, "sgc": "600675", "ti": "1", "krn": "1", "kt": "2", "ea": "07", "dkga": "02",
        "base_date": "1993", "ken": "255", "account_number": "ACC1", "customer_name": "Jane Wanjiru",
        "phone": "+254712345678", "region": "Nairobi",
    }  # fmt: skip
    values.update(fields)
    return [values[column] for column in HEADER]


def _write(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _cells(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_formula_cells_in_the_rejects_report_are_neutralised(tmp_path: Path) -> None:
    good = luhn_complete("5400000001")
    rows = [_row(good)] + [_row(formula) for formula in FORMULAS]
    result = meter_import(path=_write(tmp_path / "meters.csv", rows))
    assert result.inserted == 1 and result.rejected == len(FORMULAS)
    cells = _cells(result.rejects_path)
    for cell in cells:
        assert not cell or cell[0] not in "=+-@\t\r" or cell.lstrip("+-").replace(".", "").isdigit(), cell
    assert "'=cmd|' /C calc'!A0" in cells and "'@SUM(A1)" in cells


def test_the_project_has_one_neutraliser(tmp_path: Path) -> None:
    assert dashboard_services.csv_safe_row is csv_safe_row  # the exports use the import's neutraliser
    assert [csv_safe(v) for v in ("+254712345678", "-5", "12.50", "Jane", "", None)] == [
        "+254712345678",
        "-5",
        "12.50",
        "Jane",
        "",
        "",
    ]


def test_a_10_mb_field_rejects_its_row_and_the_rest_loads(tmp_path: Path) -> None:
    first, second, third = (luhn_complete(f"540000000{n}") for n in (2, 3, 4))
    path = _write(tmp_path / "meters.csv", [_row(first), _row(second, customer_name="x" * 10_000_000), _row(third)])
    result = meter_import(path=path)
    assert result.inserted == 2 and result.rejected == 1
    assert set(Meter.objects.values_list("meter_number", flat=True)) == {first, third}
    with open(result.rejects_path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[1][0] == "3" and "longer than" in rows[1][2]
