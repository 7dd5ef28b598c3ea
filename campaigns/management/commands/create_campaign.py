"""Create a campaign. The new campaign's id is printed alone on the last line."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from campaigns.services import CampaignError, campaign_create
from campaigns.texts import TemplateError


class Command(BaseCommand):
    help = "Create an update campaign (supply groups, old KRN -> new KRN, deadline, daily capacity)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--sgc", action="append", required=True, help="supply group code (repeatable)")
        parser.add_argument("--from-krn", type=int, required=True)
        parser.add_argument("--to-krn", type=int, required=True)
        parser.add_argument("--deadline", type=dt.date.fromisoformat, required=True, help="YYYY-MM-DD")
        parser.add_argument("--daily-capacity", type=int, required=True)
        parser.add_argument("--base-date", type=int, default=2014, choices=[1993, 2014, 2035])
        parser.add_argument("--no-rollover", action="store_true")
        parser.add_argument("--ken", type=int, default=255)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            campaign = campaign_create(
                name=options["name"],
                sgcs=options["sgc"],
                from_krn=options["from_krn"],
                to_krn=options["to_krn"],
                deadline=options["deadline"],
                daily_capacity=options["daily_capacity"],
                new_base_date=options["base_date"],
                rollover=not options["no_rollover"],
                new_ken=options["ken"],
                actor_label="command:create_campaign",
            )
        except (CampaignError, TemplateError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"campaign {campaign.name!r}: SGC {', '.join(campaign.sgcs)}, KRN {campaign.from_krn} -> "
            f"{campaign.to_krn}, deadline {campaign.deadline}, {campaign.daily_capacity} meters/day"
        )
        self.stdout.write(str(campaign.pk))
