"""Demo campaign over the demo supply group: one batch notified, one due later today, one tomorrow."""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from django.db import transaction

from kplc_sts import clock
from meters.models import Meter

from .services import batch_schedule, batches_start_due, campaign_create


def seed(stdout: TextIO) -> None:
    sgcs = sorted(set(Meter.objects.filter(krn=1).values_list("sgc", flat=True)))
    if not sgcs:
        stdout.write("campaigns: no meters on KRN 1, no demo campaign\n")
        return
    total = Meter.objects.filter(sgc__in=sgcs, krn=1).count()
    campaign = campaign_create(
        name="Update Token Meter Yako (demo)",
        sgcs=sgcs,
        from_krn=1,
        to_krn=2,
        deadline=clock.localdate() + dt.timedelta(days=60),
        daily_capacity=max(total // 4, 100),
        actor_label="seed_demo",
    )
    now = clock.now()
    first = batch_schedule(
        campaign=campaign,
        regions=[],
        sgcs=[],
        limit=max(total // 10, 1),
        scheduled_at=now - dt.timedelta(hours=2),
        actor_label="seed_demo",
    )
    # Notices for the first batch go out once this seed commits: a Celery worker handed their ids
    # inside the seed's transaction would find none of them yet (and wait for the sweep).
    transaction.on_commit(lambda: batches_start_due(now=now))
    later = batch_schedule(
        campaign=campaign,
        regions=[],
        sgcs=[],
        limit=max(total // 20, 1),
        scheduled_at=now + dt.timedelta(hours=3),
        actor_label="seed_demo",
    )
    tomorrow = batch_schedule(
        campaign=campaign,
        regions=[],
        sgcs=[],
        limit=max(total // 10, 1),
        scheduled_at=now + dt.timedelta(days=1),
        actor_label="seed_demo",
    )
    stdout.write(
        f"campaigns: '{campaign.name}' with batches of {first.enrolled} (notices going out now), "
        f"{later.enrolled} (later today) and {tomorrow.enrolled} (tomorrow) meters\n"
    )
