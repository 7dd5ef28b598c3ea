"""Send a campaign's reminders now (what the beat task does every half hour). The last line reads
`reminders sent: <n>` (with --dry-run `reminders due: <n>`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.selectors import reminder_rule_for
from campaigns.services import reminders_send
from kplc_sts import clock
from sms.quiet import quiet_hours, quiet_hours_end


class Command(BaseCommand):
    help = "Queue the reminder SMS a campaign's reminder rule finds due (never in quiet hours)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--campaign", type=int, required=True)
        parser.add_argument("--dry-run", action="store_true", help="count the meters due, send nothing")
        parser.add_argument("--limit", type=int, help="at most this many (default ENDGAME_REMINDERS_PER_RUN)")

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = Campaign.objects.filter(pk=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"no campaign {options['campaign']}")
        rule = reminder_rule_for(campaign)
        if not rule.enabled:
            self.stdout.write(f"campaign {campaign.pk}: its reminder rule is off (turn it on on the dashboard)")
        now = clock.now()
        if not options["dry_run"] and rule.enabled and quiet_hours(now):
            morning = timezone.localtime(quiet_hours_end(now))
            self.stdout.write(f"quiet hours in Nairobi: nothing sent now; the next run after {morning:%H:%M} sends")
        count = reminders_send(campaign=campaign, now=now, dry_run=options["dry_run"], limit=options["limit"])
        self.stdout.write(f"reminders {'due' if options['dry_run'] else 'sent'}: {count}")
