"""A campaign's target: every meter of its supply groups on the old key revision (a snapshot)."""

from __future__ import annotations

import datetime as dt

from kplc_sts import clock
from meters.models import Meter

from ..models import Campaign, CampaignTarget
from .segments import meter_segments_refresh


def _target_count(campaign: Campaign) -> int:
    # A meter's register krn stays as loaded while the campaign moves it, so this stays put.
    return (
        Meter.objects.filter(sgc__in=list(campaign.sgcs), krn=campaign.from_krn)
        .exclude(status=Meter.Status.RETIRED)
        .count()
    )


def campaign_target_refresh(*, campaign: Campaign) -> CampaignTarget:
    """Recount the campaign's target (seconds at full scale: run from the command or beat task)."""
    snapshot, _ = CampaignTarget.objects.update_or_create(
        campaign=campaign, defaults={"meters": _target_count(campaign), "computed_at": clock.now()}
    )
    return snapshot


def campaign_targets_refresh(*, older_than: dt.timedelta | None = None) -> int:
    """Recount the targets of campaigns that are not closed (beat: hourly; campaign_tick: when older
    than an hour; the meter import: always). Returns how many were recounted."""
    campaigns = Campaign.objects.exclude(status=Campaign.Status.CLOSED).order_by("pk")
    if older_than is not None:
        fresh = CampaignTarget.objects.filter(computed_at__gte=clock.now() - older_than).values("campaign_id")
        campaigns = campaigns.exclude(pk__in=fresh)
    refreshed = 0
    for campaign in campaigns:
        campaign_target_refresh(campaign=campaign)
        refreshed += 1
    return refreshed


def campaign_target_get(*, campaign: Campaign) -> CampaignTarget:
    """The target snapshot; a new campaign's first view counts it once."""
    return CampaignTarget.objects.filter(campaign=campaign).first() or campaign_target_refresh(campaign=campaign)


def register_recount() -> None:
    """What is derived from the register, recounted inside the import's transaction."""
    meter_segments_refresh()
    campaign_targets_refresh()
