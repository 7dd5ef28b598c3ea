"""Dashboard test data: meters via the shared factory, plus a campaign history for the charts."""

from __future__ import annotations

import datetime as dt

from django.db.models import F

from campaigns.models import Campaign, CampaignDailyStat


def daily_history(campaign: Campaign, *, today: dt.date, days: list[tuple[int, int, int, int]]) -> None:
    """Write (scheduled, notices, codes, confirmed) for the `len(days)` days ending yesterday and
    add them to the campaign counters, as the campaign services would have (each meter whose codes
    were issued is done)."""
    start = today - dt.timedelta(days=len(days))
    totals = {"notified": 0, "codes_issued": 0, "confirmed": 0, "done": 0}
    for offset, (scheduled, notices, codes, confirmed) in enumerate(days):
        CampaignDailyStat.objects.create(
            campaign=campaign,
            day=start + dt.timedelta(days=offset),
            scheduled=scheduled,
            notices_sent=notices,
            codes_issued=codes,
            confirmed=confirmed,
            done=codes,
        )
        totals["notified"] += notices
        totals["codes_issued"] += codes
        totals["done"] += codes
        totals["confirmed"] += confirmed
    Campaign.objects.filter(pk=campaign.pk).update(**{name: F(name) + value for name, value in totals.items()})
    campaign.refresh_from_db()
