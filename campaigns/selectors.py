"""Reads of campaign state: the open enrollment, coverage, capacity, the schedule preview, and
recounts from the rows that the maintained counters must always equal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet

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
    ReminderRule,
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
        inferred=Count("pk", filter=Q(inferred_at__isnull=False)),
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


def batch_counters_recount(*, batch_id: int) -> dict[str, int]:
    """One batch's funnel counters counted from its enrollment rows (for checks)."""
    counts = Enrollment.objects.filter(batch_id=batch_id).aggregate(
        enrolled=Count("pk"),
        notified=Count("pk", filter=Q(notified_at__isnull=False)),
        codes_issued=Count("pk", filter=Q(codes_issued_at__isnull=False)),
        confirmed=Count("pk", filter=Q(confirmed_at__isnull=False)),
        failed=Count("pk", filter=Q(state=State.FAILED)),
        non_compliant=Count("pk", filter=Q(state=State.NON_COMPLIANT)),
        inferred=Count("pk", filter=Q(inferred_at__isnull=False)),
    )
    return {name: int(value or 0) for name, value in counts.items()}


# --- The endgame ------------------------------------------------------------------------------------


def reminder_rule_for(campaign: Campaign) -> ReminderRule:
    """The campaign's reminder rule, or the default one (off, not saved) if it has none yet."""
    return ReminderRule.objects.filter(campaign=campaign).first() or ReminderRule(campaign=campaign)


def reminders_due(*, campaign: Campaign, rule: ReminderRule, now: dt.datetime) -> QuerySet[Enrollment]:
    """The campaign's enrollments a reminder is due to now (`rule`): open, with a phone, on the old
    key or with codes out (never updated: not confirmed, not inferred, no field visit), fewer than
    `max_per_meter` reminders, and

    - notified `notified_days` ago with no purchase since (no codes), or
    - codes issued `codes_days` ago with no sign of update (no purchase under the new key since);

    a further reminder waits as long again after the last one."""
    notified_before = now - dt.timedelta(days=rule.notified_days)
    codes_before = now - dt.timedelta(days=rule.codes_days)
    notified = Q(
        state__in=sorted(rules.REMINDER_NOTIFIED_STATES),
        codes_issued_at__isnull=True,
        notified_at__lte=notified_before,
    ) & (Q(last_reminder_at__isnull=True) | Q(last_reminder_at__lte=notified_before))
    codes = Q(
        state__in=sorted(rules.REMINDER_CODES_STATES),
        codes_issued_at__lte=codes_before,
        confirmed_at__isnull=True,
        inferred_at__isnull=True,
        new_key_purchase_at__isnull=True,
    ) & (Q(last_reminder_at__isnull=True) | Q(last_reminder_at__lte=codes_before))
    return (
        Enrollment.objects.filter(rules.OPEN_ENROLLMENT.q(now=now), campaign=campaign)
        .filter(notified | codes, reminders_sent__lt=rule.max_per_meter)
        .filter(meter__key_state__in=[Meter.KeyState.OLD_KEY, Meter.KeyState.CODES_ISSUED])
        .exclude(meter__phone="")
    )


class PushSelectionError(ValueError):
    pass


def push_candidates(
    *, campaign: Campaign, now: dt.datetime, batch_id: int | None = None, notified_days: int | None = None
) -> QuerySet[Enrollment]:
    """The enrollments a codes push would send the codes to: in a batch that came up, with a phone,
    no codes yet and not pushed before; of `batch_id`, and/or notified `notified_days` ago or more."""
    if batch_id is None and notified_days is None:
        raise PushSelectionError("choose a batch, or the days since the notice (or both)")
    if notified_days is not None and notified_days < 0:
        raise PushSelectionError("the days since the notice cannot be negative")
    queryset = (
        Enrollment.objects.filter(rules.OPEN_ENROLLMENT.q(now=now), campaign=campaign, batch__isnull=False)
        .filter(state__in=sorted(rules.PUSH_STATES), codes_issued_at__isnull=True, codes_pushed_at__isnull=True)
        .filter(meter__key_state=Meter.KeyState.OLD_KEY)
        .exclude(meter__phone="")
    )
    if batch_id is not None:
        queryset = queryset.filter(batch_id=batch_id)
    if notified_days is not None:
        queryset = queryset.filter(state=State.NOTIFIED, notified_at__lte=now - dt.timedelta(days=notified_days))
    return queryset


def left_counts(*, campaign: Campaign) -> dict[tuple[str, str], int]:
    """The not-yet-updated per (region, reason key) counted from the rows (`rules.LEFT_REASONS`):
    a grouped count per reason over the campaign's enrollments."""
    counts: dict[tuple[str, str], int] = {}
    for reason in rules.LEFT_REASONS:
        rows = (
            Enrollment.objects.filter(campaign=campaign)
            .filter(rules.left_reason_q(reason.key))
            .values("meter__region")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for row in rows:
            counts[(row["meter__region"] or "", reason.key)] = row["n"]
    return counts


def left_enrollments(*, campaign: Campaign, reason: str, region: str | None = None) -> QuerySet[Enrollment]:
    """One reason's enrollments (and one region's, if given), for the field teams' CSV."""
    queryset = Enrollment.objects.filter(campaign=campaign).filter(rules.left_reason_q(reason))
    if region is not None:
        queryset = queryset.filter(meter__region=region)
    return queryset


RESPONSE_DAYS = (1, 3, 7, 14)


def response_curve(*, campaign: Campaign, now: dt.datetime) -> dict[int, float | None]:
    """The observed response to a notice: of the enrollments notified at least d days ago, the
    share updated (codes issued, confirmed or flagged for a field visit: the funnel's "done")
    within d days of their notice, for d in RESPONSE_DAYS; None where no cohort is that old."""
    aggregates: dict[str, Any] = {}
    for days in RESPONSE_DAYS:
        span = dt.timedelta(days=days)
        old_enough = Q(notified_at__lte=now - span)
        within = (
            Q(codes_issued_at__lte=F("notified_at") + span)
            | Q(confirmed_at__lte=F("notified_at") + span)
            | Q(non_compliant_at__lte=F("notified_at") + span)
        )
        aggregates[f"n{days}"] = Count("pk", filter=old_enough)
        aggregates[f"u{days}"] = Count("pk", filter=old_enough & within)
    counts = Enrollment.objects.filter(campaign=campaign, notified_at__isnull=False).aggregate(**aggregates)
    return {days: (counts[f"u{days}"] / counts[f"n{days}"] if counts[f"n{days}"] else None) for days in RESPONSE_DAYS}


def batch_region_cohorts(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Per (batch, region): enrollments, notified, done (for the plan-aware projection)."""
    rows = (
        Enrollment.objects.filter(campaign=campaign, batch__isnull=False)
        .values("batch_id", "meter__region")
        .annotate(
            enrolled=Count("pk"),
            notified=Count("pk", filter=Q(notified_at__isnull=False)),
            done=Count(
                "pk",
                filter=Q(codes_issued_at__isnull=False)
                | Q(confirmed_at__isnull=False)
                | Q(non_compliant_at__isnull=False),
            ),
        )
        .order_by()
    )
    return [dict(row) for row in rows]
