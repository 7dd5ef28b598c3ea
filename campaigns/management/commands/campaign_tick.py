"""Run the periodic campaign and SMS jobs in-process (the embedded demo has no beat)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from campaigns.services import batches_start_due
from sms.services import messages_sweep


class Command(BaseCommand):
    help = "Start due batches and sweep the SMS outbox once, or every N seconds with --loop N."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--loop", type=float, metavar="SECONDS", help="repeat every SECONDS until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            started = batches_start_due()
            swept = messages_sweep()
            if started or any(swept.values()) or not options["loop"]:
                self.stdout.write(f"batches started: {started or 'none'}; sweep: {swept}")
                self.stdout.flush()
            if not options["loop"]:
                return
            try:
                time.sleep(options["loop"])
            except KeyboardInterrupt:
                return
