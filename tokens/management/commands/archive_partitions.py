"""Archive the vend history and SMS log months past retention to gzip CSV files, then drop them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kplc_sts.partitions import ArchiveBusy
from sms.services import log_archive_cutoff
from tokens.services.history import archive_cutoff, partitions_archive_all


class Command(BaseCommand):
    help = (
        "Export every monthly partition older than VEND_HISTORY_MONTHS (vends, tokens, digests) or "
        "SMS_LOG_MONTHS (the SMS log) to ARCHIVE_DIR (COPY to gzip CSV), check rows in the file == rows in "
        "the partition, record the SHA-256 (ArchiveRecord), then detach and drop it. --dry-run lists what "
        "would go, with row counts. Prints the count on its last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count only: nothing written or dropped")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        self.stdout.write(
            f"retention: vend history months before {archive_cutoff():%Y-%m} (Nairobi) go, "
            f"SMS log months before {log_archive_cutoff():%Y-%m} (UTC) go"
        )
        try:
            results = partitions_archive_all(dry_run=dry_run)
        except ArchiveBusy as busy:
            raise CommandError(str(busy)) from busy
        for result in results:
            if dry_run:
                self.stdout.write(f"would archive {result.partition}: {result.rows} rows")
            else:
                self.stdout.write(f"archived {result.partition}: {result.rows} rows -> {result.path} ({result.sha256})")
        verb = "would be archived" if dry_run else "archived"
        self.stdout.write(f"{len(results)} partitions {verb}")
