"""Reads of campaign state: the open enrollment, coverage, capacity, the schedule preview, and
recounts from the rows that the maintained counters must always equal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from kplc_sts import clock
from meters.models import Meter

from . import rules
from .models import (
    Campaign,
    CampaignDailyStat,
    CampaignRegionDay,
    CampaignSegment,
    CampaignTarget,
    Enrollment,
    MeterSegment,
)

State = Enrollment.State


def enrollment_for_meter(meter: Meter, *, now: dt.datetime | None = None) -> Enrollment | None:
    """The meter's open enrollment (`rules.OPEN_ENROLLMENT`), with campaign and batch loaded.

    Callers look at `.state`: codes are due while it is in `rules.CODES_DUE`.
    """
    return (
        Enrollment.objects.select_related("campaign", "batch")
        .filter(rules.OPEN_ENROLLMENT.q(now=now or clock.now()), meter=meter)
        .order_by(*rules.OPEN_ENROLLMENT_ORDER)
        .first()
    )


def campaigns_covering(meter: Meter, campaigns: Iterable[Campaign]) -> Campaign | None:
    """The newest of `campaigns` (active ones) that moves the meter's supply group off its key."""
    for campaign in sorted(campaigns, key=lambda c: -c.pk):
        if campaign.status == Campaign.Status.ACTIVE and campaign.from_krn == meter.krn and meter.sgc in campaign.sgcs:
            return campaign
    return None


def campaign_covering(meter: Meter) -> Campaign | None:
    """An active campaign that moves this meter's supply group off its current key revision."""
    # sgcs is a JSON list; there are a handful of campaigns, so they are matched here (portable).
    return campaigns_covering(meter, Campaign.objects.filter(status=Campaign.Status.ACTIVE, from_krn=meter.krn))


def segments_live() -> bool:
    """False until the first recount (a register loaded some other way: tests, old databases)."""
    return MeterSegment.objects.exists()


def wanted_sgcs(campaign: Campaign, sgcs: Iterable[str]) -> list[str]:
    campaign_sgcs = set(campaign.sgcs)
    return sorted(set(sgcs) & campaign_sgcs if sgcs else campaign_sgcs)


def available_from_segments(*, campaign: Campaign, regions: Sequence[str], sgcs: Sequence[str]) -> int | None:
    """Meters a new batch can still take, from the aggregates (a few dozen rows); None before the
    first recount."""
    if not segments_live():
        return None
    wanted = wanted_sgcs(campaign, sgcs)
    active = MeterSegment.objects.filter(sgc__in=wanted, krn=campaign.from_krn, status=Meter.Status.ACTIVE)
    enrolled = CampaignSegment.objects.filter(campaign=campaign, sgc__in=wanted)
    regions = [region for region in regions if region]
    if regions:
        active, enrolled = active.filter(region__in=regions), enrolled.filter(region__in=regions)
    taken = {(region, sgc): count for region, sgc, count in enrolled.values_list("region", "sgc", "enrolled_active")}
    rows = active.values_list("region", "sgc", "meters")
    return sum(max(count - taken.get((region, sgc), 0), 0) for region, sgc, count in rows)


def batch_candidates(*, campaign: Campaign, regions: Iterable[str], sgcs: Iterable[str]) -> QuerySet[Meter]:
    """Meters a new batch may enroll: on the campaign's old key, active, not updated by any
    channel, and not in the campaign yet (an update outside a batch records an enrollment)."""
    queryset = Meter.objects.filter(
        sgc__in=wanted_sgcs(campaign, sgcs),
        krn=campaign.from_krn,
        status=Meter.Status.ACTIVE,
        key_state__in=sorted(rules.KEY_STATES_TO_NOTIFY),
    )
    regions = [region for region in regions if region]
    if regions:
        queryset = queryset.filter(region__in=regions)
    already = Enrollment.objects.filter(campaign=campaign, meter=OuterRef("pk"))
    return queryset.filter(~Exists(already)).order_by("pk")


def campaign_day_load(*, campaign: Campaign, day: dt.date) -> int:
    """Meters already scheduled on `day` (the load the daily capacity is checked against)."""
    return CampaignDailyStat.objects.filter(campaign=campaign, day=day).values_list("scheduled", flat=True).first() or 0


def batch_preview(
    *, campaign: Campaign, regions: Sequence[str], sgcs: Sequence[str], limit: int, scheduled_at: dt.datetime
) -> dict[str, Any]:
    """What scheduling would do: meters matched (up to limit) and that day's load vs capacity.

    Read from the segment aggregates (exact: kept in step with enrollments and the register);
    counted from the meter rows only before their first recount.
    """
    available = available_from_segments(campaign=campaign, regions=regions, sgcs=sgcs)
    if available is None:
        available = batch_candidates(campaign=campaign, regions=regions, sgcs=sgcs)[: max(limit, 0)].count()
    available = min(available, max(limit, 0))
    day = clock.localdate(scheduled_at)
    load = campaign_day_load(campaign=campaign, day=day)
    return {
        "matched": available,
        "day": day,
        "day_load": load,
        "capacity": campaign.daily_capacity,
        "remaining_capacity": max(campaign.daily_capacity - load, 0),
        "load_after": load + available,
        "over_capacity": load + available > campaign.daily_capacity,
    }


def campaign_target(*, campaign: Campaign) -> CampaignTarget | None:
    """The campaign's last counted target, or None before its first count."""
    return CampaignTarget.objects.filter(campaign=campaign).first()


# --- Recounts: what the maintained counters must equal ---------------------------------------------


def campaign_counters_recount(*, campaign: Campaign) -> dict[str, int]:
    """The campaign's funnel counters counted from its enrollment rows (slow at scale: for checks)."""
    enrollments = Enrollment.objects.filter(campaign=campaign)
    counts = enrollments.aggregate(
        enrolled=Count("pk", filter=Q(batch__isnull=False)),
        notified=Count("pk", filter=Q(notified_at__isnull=False)),
        codes_issued=Count("pk", filter=Q(codes_issued_at__isnull=False)),
        confirmed=Count("pk", filter=Q(confirmed_at__isnull=False)),
        done=Count(
            "pk",
            filter=Q(codes_issued_at__isnull=False) | Q(confirmed_at__isnull=False) | Q(non_compliant_at__isnull=False),
        ),
        failed=Count("pk", filter=Q(state=State.FAILED)),
        non_compliant=Count("pk", filter=Q(state=State.NON_COMPLIANT)),
        outside_batch=Count("pk", filter=Q(batch__isnull=True)),
    )
    return {name: int(value or 0) for name, value in counts.items()}


def campaign_counters_live(*, campaign: Campaign) -> dict[str, int]:
    """The maintained counters, in the shape campaign_counters_recount returns."""
    campaign = Campaign.objects.get(pk=campaign.pk)
    return {name: getattr(campaign, name) for name in (*Campaign.COUNTER_FIELDS, "outside_batch")}


def campaign_daily_recount(*, campaign: Campaign) -> dict[dt.date, dict[str, int]]:
    """The per-day milestone columns (codes_issued, confirmed, done, failed) counted from the rows."""
    days: dict[dt.date, dict[str, int]] = {}

    def bump(at: dt.datetime | None, column: str) -> None:
        if at is not None:
            row = days.setdefault(clock.localdate(at), {"codes_issued": 0, "confirmed": 0, "done": 0, "failed": 0})
            row[column] += 1

    for row in (
        Enrollment.objects.filter(campaign=campaign)
        .values_list("codes_issued_at", "confirmed_at", "failed_at", "non_compliant_at")
        .iterator()
    ):
        codes_at, confirmed_at, failed_at, non_compliant_at = row
        bump(codes_at, "codes_issued")
        bump(confirmed_at, "confirmed")
        bump(failed_at, "failed")
        reached = [at for at in (codes_at, confirmed_at, non_compliant_at) if at is not None]
        bump(min(reached) if reached else None, "done")
    return days


def segments_recount() -> tuple[dict[tuple[str, str, int, str], int], dict[tuple[int, str, str], int]]:
    """MeterSegment and CampaignSegment as a recount from the rows would make them (zeros dropped)."""
    meters = {
        (row["region"], row["sgc"], row["krn"], row["status"]): row["n"]
        for row in Meter.objects.values("region", "sgc", "krn", "status").annotate(n=Count("pk"))
    }
    enrolled: dict[tuple[int, str, str], int] = {}
    for campaign in Campaign.objects.all():
        for row in (
            Enrollment.objects.filter(
                campaign=campaign, meter__krn=campaign.from_krn, meter__status=Meter.Status.ACTIVE
            )
            .values("meter__region", "meter__sgc")
            .annotate(n=Count("pk"))
        ):
            enrolled[(campaign.pk, row["meter__region"], row["meter__sgc"])] = row["n"]
    return meters, enrolled


def segments_live_counts() -> tuple[dict[tuple[str, str, int, str], int], dict[tuple[int, str, str], int]]:
    """The maintained MeterSegment and CampaignSegment rows in segments_recount's shape."""
    meters = {
        (row.region, row.sgc, row.krn, row.status): row.meters for row in MeterSegment.objects.all() if row.meters
    }
    enrolled = {
        (row.campaign_id, row.region, row.sgc): row.enrolled_active
        for row in CampaignSegment.objects.all()
        if row.enrolled_active
    }
    return meters, enrolled


def campaign_region_recount(*, campaign: Campaign) -> dict[tuple[str, dt.date], int]:
    """Meters updated per (region, Nairobi day) counted from the rows: the day an enrollment first
    counted as updated (the earliest of codes issued, confirmed, flagged), the meter's region."""
    counts: dict[tuple[str, dt.date], int] = {}
    rows = (
        Enrollment.objects.filter(campaign=campaign)
        .filter(Q(codes_issued_at__isnull=False) | Q(confirmed_at__isnull=False) | Q(non_compliant_at__isnull=False))
        .values_list("meter__region", "codes_issued_at", "confirmed_at", "non_compliant_at")
        .iterator()
    )
    for region, *moments in rows:
        key = (region or "", clock.localdate(min(at for at in moments if at is not None)))
        counts[key] = counts.get(key, 0) + 1
    return counts


def campaign_region_live(*, campaign: Campaign) -> dict[tuple[str, dt.date], int]:
    """The maintained CampaignRegionDay rows in campaign_region_recount's shape."""
    return {(row.region, row.day): row.done for row in CampaignRegionDay.objects.filter(campaign=campaign) if row.done}
