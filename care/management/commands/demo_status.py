"""Where the demo stands after `make run` seeded it: the first batch's notices and the care queues.

`--wait N` waits up to N seconds for the first batch's notices to be reported delivered (with
Celery, a worker is still sending them when the seed ends).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count

from campaigns.models import Batch
from care.selectors import care_queues_count
from sms.models import Message
from sms.selectors import batch_status_counts, counts_by

PENDING = (Message.Status.QUEUED, Message.Status.SENDING, Message.Status.SENT)


class Command(BaseCommand):
    help = "Print the first batch's notice delivery and the care queues (used by make run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the notices to settle")

    def handle(self, *args: Any, **options: Any) -> None:
        batch = Batch.objects.order_by("scheduled_at", "pk").first()
        if batch is None:
            self.stdout.write("  No campaign batch yet.")
            return
        notices = Message.objects.filter(batch_id=batch.pk, purpose=Message.Purpose.NOTICE)
        deadline = time.monotonic() + options["wait"]
        while notices.filter(status__in=PENDING).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        found = batch_status_counts(batch_id=batch.pk, purposes=[Message.Purpose.NOTICE])
        counts = {status: found.get(status, 0) for status in Message.Status.values}
        batch.refresh_from_db()
        retried = sum(
            counts_by(
                lambda model: (
                    model._default_manager.filter(batch_id=batch.pk, purpose=Message.Purpose.NOTICE, attempts__gt=1)
                    .values("purpose")
                    .annotate(n=Count("pk"))
                    .order_by()
                ),
                "purpose",
            ).values()
        )
        self.stdout.write(
            f"  Batch {batch.number}: {sum(counts.values())} notices, {counts['delivered']} delivered, "
            f"{counts['failed'] + counts['rejected']} failed, {counts['queued'] + counts['sending'] + counts['sent']} "
            f"on their way; {retried} needed a retry. The batch is {batch.get_status_display().lower()}."
        )
        queues = care_queues_count(user=None)
        self.stdout.write(
            f"  Care queues: {queues.open_cases} open cases, {queues.field_visits} field visit(s), "
            f"{queues.failing_sms} meter(s) whose SMS keep failing, {queues.open_reversals} reversal request(s)."
        )
