"""Fixtures for the meter register tests."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from meters.services import HEADER


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """write_csv(rows, name=..., header=HEADER) -> path of a CSV export in tmp_path."""

    def write(rows: list[list[str]], name: str = "meters.csv", header: tuple[str, ...] | None = HEADER) -> Path:
        path = tmp_path / name
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            if header is not None:
                writer.writerow(header)
            writer.writerows(rows)
        return path

    return write


def read_rejects(path: Path) -> list[tuple[int, str, str]]:
    with open(path, encoding="utf-8", newline="") as rejects:
        reader = csv.reader(rejects)
        assert next(reader) == ["line", "meter_number", "reason"]
        return [(int(line), number, reason) for line, number, reason in reader]
