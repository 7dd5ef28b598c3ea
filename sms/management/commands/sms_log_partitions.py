"""Make the SMS log's monthly partitions ahead (what beat does every 6 hours)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from sms.services import log_partitions, log_partitions_ensure


class Command(BaseCommand):
    help = "Make the SMS log's partitions for this month and the next N (PostgreSQL; nothing on SQLite)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--months", type=int, default=None, help="months ahead (default SMS_LOG_PARTITIONS_AHEAD)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["months"] is not None and options["months"] < 0:
            self.stderr.write("--months must be 0 or more")
            raise SystemExit(2)
        made = log_partitions_ensure(months_ahead=options["months"])
        self.stdout.write(f"made: {', '.join(made) or 'none'}; partitions: {', '.join(log_partitions()) or 'none'}")
