"""Compact the stored responses of vends older than the replay window (what the hourly task does)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from kplc_sts import clock
from tokens.services.history import vend_bodies_compact


class Command(BaseCommand):
    help = "Empty the stored response body of every vend older than VEND_REPLAY_DAYS; prints the count."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="sweep all history, not only the last weeks")

    def handle(self, *args: Any, **options: Any) -> None:
        since = clock.now() - dt.timedelta(days=366 * 20) if options["all"] else None
        self.stdout.write(f"{vend_bodies_compact(since=since)} vend responses compacted")
