"""Create the vend history's monthly partitions ahead (what the hourly beat task does)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tokens.services.history import partitions_ensure


class Command(BaseCommand):
    help = (
        "Create the monthly partitions of tokens_vend, tokens_issuedtoken and care_tokendigest from this month "
        "to --ahead months on (PostgreSQL; nothing on SQLite). Idempotent; prints the count created."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ahead", type=int, default=None, help="months ahead (HISTORY_PARTITIONS_AHEAD_MONTHS)")

    def handle(self, *args: Any, **options: Any) -> None:
        created = partitions_ensure(ahead=options["ahead"])
        for name in created:
            self.stdout.write(f"created {name}")
        self.stdout.write(f"{len(created)} partitions created")
