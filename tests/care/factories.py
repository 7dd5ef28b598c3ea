"""Builders for care tests: meters in a region of their own, batches, vends."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from campaigns.services import batch_schedule
from meters.models import Meter
from tests.factories import MeterFactory
from tokens.services import vend_create

SGC = "600675"
BEFORE_ROLLOVER = dt.datetime(2024, 6, 3, 10, 15, tzinfo=dt.UTC)

_regions = iter(range(1_000_000))


def make_meter(**fields) -> Meter:
    # A region of its own lets a batch select exactly this meter.
    fields.setdefault("region", f"Region {next(_regions)}")
    fields.setdefault("sgc", SGC)
    return MeterFactory(**fields)


def enroll(campaign, meter: Meter, *, when: dt.datetime | None = None):
    return batch_schedule(
        campaign=campaign,
        regions=[meter.region],
        sgcs=[meter.sgc],
        limit=1,
        scheduled_at=when or timezone.now() - dt.timedelta(hours=1),
        actor_label="test",
    )


_references = iter(range(1_000_000))


def vend(partner, meter: Meter, *, amount: str = "500", now: dt.datetime | None = None):
    return vend_create(
        partner=partner,
        meter_number=meter.meter_number,
        amount=Decimal(amount),
        reference=f"REF{next(_references)}",
        now=now,
    ).vend
