"""Schedule a batch. The last line reads `batch <id>: <n> meters`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import CampaignError, batch_schedule
from kplc_sts import clock


def _when(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return timezone.make_aware(value) if timezone.is_naive(value) else value


class Command(BaseCommand):
    help = "Enroll not-yet-enrolled meters of a campaign in a new batch (set-based)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--campaign", type=int, required=True)
        parser.add_argument("--region", action="append", default=[])
        parser.add_argument("--sgc", action="append", default=[])
        parser.add_argument("--limit", type=int, required=True)
        parser.add_argument("--at", type=_when, help="ISO 8601 time (local time if no offset); default now")
        parser.add_argument("--override-capacity", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            campaign = Campaign.objects.get(pk=options["campaign"])
        except Campaign.DoesNotExist:
            raise CommandError(f"no campaign {options['campaign']}") from None
        try:
            batch = batch_schedule(
                campaign=campaign,
                regions=options["region"],
                sgcs=options["sgc"],
                limit=options["limit"],
                scheduled_at=options["at"] or clock.now(),
                override_capacity=options["override_capacity"],
                actor_label="command:schedule_batch",
            )
        except CampaignError as exc:
            raise CommandError(str(exc)) from None
        when = timezone.localtime(batch.scheduled_at)
        self.stdout.write(
            f"campaign {campaign.pk} batch number {batch.number} at {when:%Y-%m-%d %H:%M %Z}"
            + (" (capacity overridden)" if batch.capacity_overridden else "")
        )
        self.stdout.write(f"batch {batch.pk}: {batch.enrolled} meters")
