"""The funnel and daily counters, bumped with F() expressions inside the changing transaction.

Counter rows are always updated in the same order (batch, campaign, daily stat), so concurrent
transactions never deadlock on them. Set-based operations bump them by the rows they touched.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from django.db.models import F

from kplc_sts.db import upsert_increment

from ..models import Batch, Campaign, CampaignDailyStat, CampaignRegionDay


def counters_add(*, batch_id: int | None, campaign_id: int, **deltas: int) -> None:
    """Add `deltas` to the batch's (if any) and the campaign's funnel counters."""
    deltas = {name: value for name, value in deltas.items() if value}
    if not deltas:
        return
    campaign_only = {name: value for name, value in deltas.items() if name == "outside_batch"}
    shared = {name: F(name) + value for name, value in deltas.items() if name not in campaign_only}
    if batch_id is not None and shared:
        Batch.objects.filter(pk=batch_id).update(**shared)
    Campaign.objects.filter(pk=campaign_id).update(
        **shared, **{name: F(name) + value for name, value in campaign_only.items()}
    )


def counters_add_many(*, field: str, batches: Sequence[int | None], campaigns: Sequence[int]) -> None:
    """One more `field` for each enrollment of a set-based change, given its batch and campaign
    ids: every batch row first (in id order), then the campaigns, as counters_add orders them."""
    for model, ids in ((Batch, [pk for pk in batches if pk is not None]), (Campaign, list(campaigns))):
        for pk, count in sorted(Counter(ids).items()):
            model.objects.filter(pk=pk).update(**{field: F(field) + count})


def daily_add(*, campaign_id: int, day: dt.date, **deltas: int) -> None:
    """Add `deltas` to the campaign's row for `day`, creating it if needed (one statement)."""
    upsert_increment(CampaignDailyStat, {"campaign_id": campaign_id, "day": day}, **deltas)


def region_done_add(*, campaign_id: int, region: str, day: dt.date) -> None:
    """One more meter of `region` updated on `day` (the progress by region), in one statement."""
    upsert_increment(CampaignRegionDay, {"campaign_id": campaign_id, "region": region, "day": day}, done=1)
