"""Load the utility's meter register export (CSV); see meters.services.meter_import."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from meters.services import HEADER, MeterImportError, meter_import


class Command(BaseCommand):
    help = (
        "Import meters from a CSV export with the header " + ",".join(HEADER) + ". New meters are inserted, "
        "known ones updated; bad rows go to a rejects CSV (line,meter_number,reason)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the CSV export")
        parser.add_argument("--rejects", type=Path, help="where to write rejected rows (default: FILE.rejects.csv)")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        size = path.stat().st_size if path.is_file() else None
        # Only draw the bar for a person watching; logs and CI get the summary alone.
        bar = tqdm(
            total=size, unit="B", unit_scale=True, desc="import", file=sys.stderr, disable=not sys.stderr.isatty()
        )
        done = [0]

        def progress(position: int) -> None:
            bar.update(position - done[0])
            done[0] = position

        try:
            result = meter_import(
                path=path,
                rejects_path=options["rejects"],
                actor_label=f"command:import_meters:{getpass.getuser()}",
                progress=progress,
                notice=bar.set_postfix_str,
            )
        except MeterImportError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        self.stdout.write(
            f"{result.rows_read} rows read: {result.inserted} inserted, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.rejected} rejected in {result.seconds:.1f} s"
        )
        if result.rejects_path:
            self.stdout.write(f"Rejected rows: {result.rejects_path}")
