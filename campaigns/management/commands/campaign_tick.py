"""Run the periodic jobs in-process (the embedded demo has no beat): the beat tasks, called directly."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand

from campaigns.services import campaign_targets_refresh, reminders_send_all, updates_infer
from campaigns.tasks import start_due_batches_task
from sms.tasks import log_settled_task, sweep_task

TARGET_MAX_AGE = dt.timedelta(hours=1)


class Command(BaseCommand):
    help = "Start due batches and sweep the SMS outbox once, or every N seconds with --loop N."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--loop", type=float, metavar="SECONDS", help="repeat every SECONDS until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            started = start_due_batches_task()
            swept = sweep_task()
            swept["logged"] = log_settled_task()
            # Without beat this is what keeps the overview's target current (beat: hourly task).
            targets = campaign_targets_refresh(older_than=TARGET_MAX_AGE)
            # The endgame's beat tasks: both are no-ops until a rule is on or a grace period ends.
            inferred, reminded = updates_infer(), reminders_send_all()
            if started or any(swept.values()) or targets or inferred or reminded or not options["loop"]:
                self.stdout.write(
                    f"batches started: {started or 'none'}; sweep: {swept}; targets recounted: {targets}; "
                    f"inferred updated: {inferred}; reminders: {reminded}"
                )
                self.stdout.flush()
            if not options["loop"]:
                return
            try:
                time.sleep(options["loop"])
            except KeyboardInterrupt:
                return
