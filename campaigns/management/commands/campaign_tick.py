"""Run the periodic campaign and SMS jobs in-process (the embedded demo has no beat)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand

from campaigns.services import batches_start_due
from sms.services import messages_sweep

TARGET_MAX_AGE = dt.timedelta(hours=1)


class Command(BaseCommand):
    help = "Start due batches and sweep the SMS outbox once, or every N seconds with --loop N."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--loop", type=float, metavar="SECONDS", help="repeat every SECONDS until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            started = batches_start_due()
            swept = messages_sweep()
            targets = 0
            if apps.is_installed("dashboard"):
                # Without beat (the embedded demo) this is what keeps the overview's target current.
                from dashboard.services import campaign_targets_refresh

                targets = campaign_targets_refresh(older_than=TARGET_MAX_AGE)
            if started or any(swept.values()) or targets or not options["loop"]:
                self.stdout.write(f"batches started: {started or 'none'}; sweep: {swept}; targets recounted: {targets}")
                self.stdout.flush()
            if not options["loop"]:
                return
            try:
                time.sleep(options["loop"])
            except KeyboardInterrupt:
                return
