"""Send update codes by SMS without a purchase. The last line reads `codes pushed: <n>` (with
--dry-run `codes to push: <n>`), after a line with the SMS cost."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from campaigns.models import Batch, Campaign
from campaigns.selectors import PushSelectionError
from tokens.services import codes_push, codes_push_preview, sms_cost


class Command(BaseCommand):
    help = (
        "Send the Reset and Update codes (the meter's one key change set) by SMS to a batch, or to the "
        "meters notified N days ago or more with still no codes. A second run sends nothing new."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--campaign", type=int, required=True)
        parser.add_argument("--batch", type=int, help="batch id")
        parser.add_argument("--notified-days", type=int, help="notified at least this many days ago")
        parser.add_argument("--dry-run", action="store_true", help="count and cost only, send nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = Campaign.objects.filter(pk=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"no campaign {options['campaign']}")
        batch = None
        if options["batch"] is not None:
            batch = Batch.objects.filter(pk=options["batch"], campaign=campaign).first()
            if batch is None:
                raise CommandError(f"campaign {campaign.pk} has no batch {options['batch']}")
        try:
            preview = codes_push_preview(campaign=campaign, batch=batch, notified_days=options["notified_days"])
        except PushSelectionError as exc:
            raise CommandError(str(exc)) from None
        if options["dry_run"]:
            self.stdout.write(f"SMS cost: KES {preview.cost} ({preview.count} SMS)")
            self.stdout.write(f"codes to push: {preview.count}")
            return
        sent = codes_push(
            campaign=campaign, batch=batch, notified_days=options["notified_days"], actor_label="command:push_codes"
        )
        self.stdout.write(f"SMS cost: KES {sms_cost(sent)} ({sent} SMS)")
        self.stdout.write(f"codes pushed: {sent}")
