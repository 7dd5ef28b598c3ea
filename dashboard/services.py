"""Read models for the staff dashboard.

Every figure comes from a maintained counter (Campaign/Batch counters, CampaignDailyStat,
CampaignTarget, VendMinuteStat, ApiErrorStat) or from an indexed query bounded by a page size:
nothing counts the meter or enrollment tables per request.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import models
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute
from django.db.models.functions.datetime import TruncBase
from django.utils import timezone

from campaigns import rules
from campaigns.models import (
    Batch,
    Campaign,
    CampaignDailyStat,
    CampaignRegionDay,
    CampaignTarget,
    Enrollment,
    MeterSegment,
)
from campaigns.selectors import (
    batch_region_cohorts,
    left_counts,
    left_enrollments,
    response_curve,
    segments_live,
)
from campaigns.services import campaign_target_get
from kplc_sts.csvsafe import csv_safe_row
from kplc_sts.db import by_vendor
from meters.models import Meter
from sms.models import Message, MessageFields, MessageTally
from sms.selectors import across, counts_by
from sms.tallies import batch_tallies
from tokens.models import ApiErrorStat, VendMinuteStat

from . import _pg, _portable

# Queue depth is counted up to this many rows; beyond it the page says "more than".
QUEUE_COUNT_CAP = 100_000
REGIONS_CACHE_KEY = "dashboard:meter-regions"
REGIONS_CACHE_SECONDS = 600
statements = by_vendor(pg=_pg, portable=_portable)


# --- Campaign overview -------------------------------------------------------------------------


def campaign_current() -> Campaign | None:
    """The campaign the dashboard opens on: the newest active one, else the newest."""
    return (
        Campaign.objects.filter(status=Campaign.Status.ACTIVE).order_by("-created_at", "-id").first()
        or Campaign.objects.order_by("-created_at", "-id").first()
    )


def campaign_target(*, campaign: Campaign) -> CampaignTarget:
    """The campaign's target snapshot (counted once on a new campaign's first view)."""
    return campaign_target_get(campaign=campaign)


@dataclass(frozen=True)
class FunnelStage:
    key: str
    label: str
    value: int
    share: float  # of the target, 0..100, for the bar width


FUNNEL_LABELS = (
    ("target", "Target"),
    ("scheduled", "Scheduled"),
    ("notified", "Notified"),
    ("codes_issued", "Codes issued"),
    ("confirmed", "Confirmed by customer"),
    ("inferred", "Inferred from purchase"),
    ("failed", "Failed"),
    ("non_compliant", "Non-compliant"),
    ("outside_batch", "Updated outside a batch"),
)


def funnel_stages(*, counters: Campaign | Batch, target: int) -> list[FunnelStage]:
    """The funnel of a campaign (or a batch): every update counts, whatever channel it came by;
    "updated outside a batch" says how many of them no batch had reached yet."""
    values = {
        "target": target,
        "scheduled": counters.enrolled,
        "notified": counters.notified,
        "codes_issued": counters.codes_issued,
        "confirmed": counters.confirmed,
        "inferred": max(counters.inferred, 0),
        "failed": max(counters.failed, 0),
        "non_compliant": max(counters.non_compliant, 0),
        "outside_batch": getattr(counters, "outside_batch", 0),
    }
    base = max(target, 1)
    return [
        FunnelStage(key=key, label=label, value=values[key], share=min(100.0, round(100.0 * values[key] / base, 2)))
        for key, label in FUNNEL_LABELS
    ]


@dataclass(frozen=True)
class Projection:
    done: int
    remaining: int
    window_days: int
    window_total: int
    rate_per_day: float
    projected_date: date | None
    deadline: date
    days_left: int
    needed_per_day: int
    on_track: bool


def campaign_projection(*, campaign: Campaign, target: int, today: date) -> Projection:
    """Projected completion at the trailing 7-day rate of meters updated.

    A meter counts as done (`Campaign.done`) when its codes were issued (the customer received
    them with a token that only works after typing them), it was confirmed, or it left the queue
    as non-compliant (field visit), by any channel. The window is the last 7 complete days; a
    campaign with less history uses the days since its first recorded activity.
    """
    done = campaign.done
    remaining = max(target - done, 0)
    start = CampaignDailyStat.objects.filter(campaign=campaign).aggregate(first=Min("day"))["first"] or today
    window_start = max(today - timedelta(days=7), start)
    window_end = today  # exclusive: today is not over yet
    if window_start >= window_end:
        window_start, window_end = today, today + timedelta(days=1)
    window_days = (window_end - window_start).days
    window_total = (
        CampaignDailyStat.objects.filter(campaign=campaign, day__gte=window_start, day__lt=window_end).aggregate(
            n=Sum("done")
        )["n"]
        or 0
    )
    rate = window_total / window_days
    if remaining == 0:
        projected: date | None = today
    elif rate > 0:
        projected = today + timedelta(days=math.ceil(remaining / rate))
    else:
        projected = None
    days_left = (campaign.deadline - today).days + 1  # the deadline day itself still counts
    needed = math.ceil(remaining / days_left) if days_left > 0 else remaining
    return Projection(
        done=done,
        remaining=remaining,
        window_days=window_days,
        window_total=window_total,
        rate_per_day=rate,
        projected_date=projected,
        deadline=campaign.deadline,
        days_left=max(days_left, 0),
        needed_per_day=needed,
        on_track=projected is not None and projected <= campaign.deadline,
    )


@dataclass(frozen=True)
class RegionProgress:
    region: str
    target: int
    done: int
    remaining: int
    share: float  # done / target, 0..100
    rate_per_day: float  # meters updated per day over the projection's window
    needed_per_day: int  # to finish the region by the deadline
    projected_date: date | None
    on_track: bool

    @property
    def pace_ratio(self) -> float:
        """How the region's pace compares with what it needs (1 = exactly on time)."""
        if self.remaining == 0:
            return math.inf
        return self.rate_per_day / self.needed_per_day if self.needed_per_day else math.inf


def region_targets(*, campaign: Campaign) -> dict[str, int]:
    """Meters of the campaign's target per region, from the register's segment counts (a few dozen
    rows). Before the first segment count (a register loaded some other way) the meters are
    grouped once and the answer cached, as meter_regions does."""
    if segments_live():
        meters = MeterSegment.objects.filter(sgc__in=list(campaign.sgcs), krn=campaign.from_krn).exclude(
            status=Meter.Status.RETIRED
        )
        return {row["region"] or "": row["n"] for row in meters.values("region").annotate(n=Sum("meters"))}
    key = f"dashboard:region-targets:{campaign.pk}"
    cached = cache.get(key)
    if cached is None:
        rows = (
            Meter.objects.filter(sgc__in=list(campaign.sgcs), krn=campaign.from_krn)
            .exclude(status=Meter.Status.RETIRED)
            .values("region")
            .annotate(n=Count("pk"))
        )
        cached = {row["region"] or "": row["n"] for row in rows}
        cache.set(key, cached, REGIONS_CACHE_SECONDS)
    return dict(cached)


def campaign_region_progress(*, campaign: Campaign, today: date) -> list[RegionProgress]:
    """Each region's target, updated share and pace, lagging regions first (KPLC steers region by
    region). Pace is the trailing 7-day rate, as for the whole campaign's projection."""
    projection_window = campaign_projection(campaign=campaign, target=0, today=today)
    window_end = today
    window_start = window_end - timedelta(days=projection_window.window_days)
    done_rows = (
        CampaignRegionDay.objects.filter(campaign=campaign)
        .values("region")
        .annotate(
            updated=Sum("done"),
            in_window=Sum("done", filter=Q(day__gte=window_start, day__lt=window_end)),
        )
    )
    done = {row["region"]: (row["updated"] or 0, row["in_window"] or 0) for row in done_rows}
    targets = region_targets(campaign=campaign)
    days_left = (campaign.deadline - today).days + 1
    regions = []
    for region in sorted(set(targets) | set(done)):
        target = targets.get(region, 0)
        updated, in_window = done.get(region, (0, 0))
        remaining = max(target - updated, 0)
        rate = in_window / projection_window.window_days if projection_window.window_days else 0.0
        if remaining == 0:
            projected: date | None = today
        elif rate > 0:
            projected = today + timedelta(days=math.ceil(remaining / rate))
        else:
            projected = None
        regions.append(
            RegionProgress(
                region=region,
                target=target,
                done=updated,
                remaining=remaining,
                share=100.0 * updated / target if target else 100.0,
                rate_per_day=rate,
                needed_per_day=math.ceil(remaining / days_left) if days_left > 0 else remaining,
                projected_date=projected,
                on_track=projected is not None and projected <= campaign.deadline,
            )
        )
    # Lagging first: furthest behind the pace it needs, then the smallest share updated.
    return sorted(regions, key=lambda r: (r.on_track, r.pace_ratio, r.share, r.region))


DAILY_FIELDS = CampaignDailyStat.DAILY_FIELDS


def campaign_daily_series(
    *, campaign: Campaign, today: date, max_days: int = 180, days_ahead: int = 14
) -> list[dict[str, Any]]:
    """One row per day from the first recorded day to today (or the last day with meters already
    scheduled, up to `days_ahead` ahead), gaps filled with zeros."""
    since = today - timedelta(days=max_days - 1)
    until = today + timedelta(days=days_ahead)
    rows = {
        row["day"]: row
        for row in CampaignDailyStat.objects.filter(campaign=campaign, day__gte=since, day__lte=until).values(
            "day", *DAILY_FIELDS
        )
    }
    if not rows:
        return []
    day, last, series = min(rows), max(today, max(rows)), []
    while day <= last:
        series.append(rows.get(day) or {"day": day, **dict.fromkeys(DAILY_FIELDS, 0)})
        day += timedelta(days=1)
    return series


# --- Batches --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsTally:
    """What became of a batch's (or a campaign's) SMS, from the outbox's tallies."""

    sent: int
    delivered: int
    failed: int

    @property
    def delivery_rate(self) -> float | None:
        """Delivered share of the messages whose fate is known (delivered or finally failed)."""
        settled = self.delivered + self.failed
        return 100.0 * self.delivered / settled if settled else None


def batch_sms_tallies(*, batch_ids: Sequence[int]) -> dict[int, SmsTally]:
    return {
        batch_id: SmsTally(sent=t.sent, delivered=t.delivered, failed=t.failed)
        for batch_id, t in batch_tallies(batch_ids=batch_ids).items()
    }


@dataclass(frozen=True)
class BarPart:
    key: str
    label: str
    value: int
    share: float  # of the batch's meters, 0..100


def batch_progress_bar(batch: Batch) -> list[BarPart]:
    """A batch's meters as one stacked bar: confirmed, codes issued (not yet confirmed), notified
    only, failed; what is left of the bar is still waiting. From the batch's counters."""
    total = batch.enrolled
    parts = [
        ("confirmed", "Confirmed", batch.confirmed),
        ("codes", "Codes issued", max(batch.codes_issued - batch.confirmed, 0)),
        ("notified", "Notified", max(batch.notified - batch.codes_issued, 0)),
        ("failed", "Failed", max(batch.failed, 0)),
    ]
    bar, used = [], 0.0
    for key, label, value in parts:
        share = min(100.0 * value / total if total else 0.0, 100.0 - used)
        used += share
        bar.append(BarPart(key, label, value, share))
    return bar


DELIVERY_CACHE_SECONDS = 30


def batch_delivery_series(*, batch: Batch) -> dict[str, Any]:
    """The batch's notices delivered (and failed) over time, per minute, hour or day depending on
    how long the batch has been sending: one grouped query over its messages, cached briefly."""
    key = f"dashboard:batch-delivery:{batch.pk}"
    cached = cache.get(key)
    if cached is not None:
        return dict(cached)

    def notices(model: type[MessageFields]) -> QuerySet[Any]:
        return model._default_manager.filter(
            batch_id=batch.pk, purpose=Message.Purpose.NOTICE, delivered_at__isnull=False
        )

    # Settled notices sit in the outbox a minute, then in the log: both, in one statement each.
    spans = across(
        lambda model: (
            notices(model)
            .values("batch_id")
            .annotate(first=Min("delivered_at"), last=Max("delivered_at"))
            .values("first", "last")
        )
    )
    firsts = [row["first"] for row in spans if row["first"] is not None]
    lasts = [row["last"] for row in spans if row["last"] is not None]
    span = {"first": min(firsts) if firsts else None, "last": max(lasts) if lasts else None}
    zone = timezone.get_current_timezone()
    if span["first"] is None:
        series: dict[str, Any] = {"unit": "minute", "buckets": [], "delivered": [], "failed": []}
    else:
        seconds = (span["last"] - span["first"]).total_seconds()
        unit = "minute" if seconds <= 3 * 3600 else "hour" if seconds <= 7 * 86400 else "day"
        trunc: type[TruncBase] = {"minute": TruncMinute, "hour": TruncHour, "day": TruncDay}[unit]
        summed: dict[Any, dict[str, int]] = {}
        for part in across(
            lambda model: (
                notices(model)
                .annotate(bucket=trunc("delivered_at", tzinfo=zone))
                .values("bucket")
                .annotate(
                    delivered=Count("pk", filter=Q(status=Message.Status.DELIVERED)),
                    failed=Count("pk", filter=Q(status__in=[Message.Status.FAILED, Message.Status.REJECTED])),
                )
                .order_by()
            )
        ):
            bucket = summed.setdefault(part["bucket"], {"delivered": 0, "failed": 0})
            bucket["delivered"] += part["delivered"]
            bucket["failed"] += part["failed"]
        rows = [{"bucket": key, **summed[key]} for key in sorted(summed)]
        # The line rises from zero: a first bucket, one unit before the first report, holds nothing.
        step = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}[unit]
        before = timezone.localtime(span["first"] - step, zone)
        series = {"unit": unit, "buckets": [before.isoformat()], "delivered": [0], "failed": [0]}
        for row in rows:
            series["buckets"].append(timezone.localtime(row["bucket"], zone).isoformat())
            series["delivered"].append(row["delivered"])
            series["failed"].append(row["failed"])
    series["enrolled"] = batch.enrolled
    cache.set(key, series, DELIVERY_CACHE_SECONDS)
    return series


def campaign_sms_tally(*, campaign: Campaign) -> SmsTally:
    """The campaign's SMS: its batches' tallies summed (a few hundred rows at most)."""
    totals = MessageTally.objects.filter(batch_id__in=campaign.batches.values("pk")).aggregate(
        sent=Sum("sent"), delivered=Sum("delivered"), failed=Sum("failed")
    )
    return SmsTally(**{name: int(value or 0) for name, value in totals.items()})


def batch_failure_reasons(*, batch: Batch) -> list[dict[str, Any]]:
    """Failed and rejected SMS of the batch by reason (the (batch, status) index bounds the scan)."""
    counts = counts_by(
        lambda model: (
            model._default_manager.filter(
                batch_id=batch.pk, status__in=[Message.Status.FAILED, Message.Status.REJECTED]
            )
            .values("failure_reason")
            .annotate(n=Count("id"))
            .order_by()
        ),
        "failure_reason",
    )
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"reason": reason or "(no reason given)", "count": count} for reason, count in ordered]


def batch_failed_enrollments(*, batch: Batch, after_id: int = 0, limit: int = 50) -> list[Enrollment]:
    """One page of the batch's failed meters, keyset-paginated by enrollment id."""
    return list(
        Enrollment.objects.filter(batch=batch, state=Enrollment.State.FAILED, id__gt=after_id)
        .select_related("meter")
        .order_by("id")[:limit]
    )


def meter_regions() -> list[str]:
    """Distinct meter regions, cached: on PostgreSQL a loose index scan over (region, sgc) reads
    one index entry per region instead of 7.4 million rows."""
    regions = cache.get(REGIONS_CACHE_KEY)
    if regions is not None:
        return list(regions)
    regions = [region for region in statements.meter_regions() if region]
    cache.set(REGIONS_CACHE_KEY, regions, REGIONS_CACHE_SECONDS)
    return regions


# --- Vending health ------------------------------------------------------------------------------


def _minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class QueueDepth:
    queued: int
    queued_capped: bool
    sending: int
    oldest_queued_at: datetime | None


def sms_queue_depth() -> QueueDepth:
    # The outbox holds only the work in flight (settled messages move to the log), so these scan
    # it instead of riding partial indexes on status, which would make every status update non-HOT;
    # the cap bounds the worst case, and the oldest queued is the first one in id order.
    queued = Message.objects.filter(status=Message.Status.QUEUED).values("id")[: QUEUE_COUNT_CAP + 1].count()
    sending = Message.objects.filter(status=Message.Status.SENDING).values("id")[: QUEUE_COUNT_CAP + 1].count()
    oldest_at = (
        Message.objects.filter(status=Message.Status.QUEUED).order_by("id").values_list("created_at", flat=True).first()
    )
    return QueueDepth(
        queued=min(queued, QUEUE_COUNT_CAP),
        queued_capped=queued > QUEUE_COUNT_CAP,
        sending=min(sending, QUEUE_COUNT_CAP),
        oldest_queued_at=oldest_at,
    )


@dataclass(frozen=True)
class VendingHealth:
    minutes: list[dict[str, Any]]
    last_hour_vends: int
    last_hour_with_codes: int
    today_vends: int
    today_with_codes: int
    current_per_minute: int
    errors: list[dict[str, Any]]
    queue: QueueDepth

    @property
    def last_hour_codes_share(self) -> float | None:
        return 100.0 * self.last_hour_with_codes / self.last_hour_vends if self.last_hour_vends else None

    @property
    def today_codes_share(self) -> float | None:
        return 100.0 * self.today_with_codes / self.today_vends if self.today_vends else None

    @property
    def last_hour_per_minute(self) -> float:
        return self.last_hour_vends / 60.0


def vending_health(*, now: datetime) -> VendingHealth:
    current = _minute_floor(now)
    since = current - timedelta(minutes=59)
    by_minute = {
        row["minute"]: row
        for row in VendMinuteStat.objects.filter(minute__gte=since)
        .values("minute")
        .annotate(vends=Sum("vends"), with_codes=Sum("vends_with_codes"))
    }
    minutes: list[dict[str, Any]] = []
    for offset in range(60):
        minute = since + timedelta(minutes=offset)
        row: Any = by_minute.get(minute, {})
        minutes.append({"minute": minute, "vends": row.get("vends") or 0, "with_codes": row.get("with_codes") or 0})
    local_midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    today = VendMinuteStat.objects.filter(minute__gte=local_midnight).aggregate(
        vends=Sum("vends"), with_codes=Sum("vends_with_codes")
    )
    errors = (
        ApiErrorStat.objects.filter(minute__gte=current - timedelta(hours=24))
        .values("code")
        .annotate(
            last_24h=Sum("count"),
            last_hour=Sum("count", filter=Q(minute__gte=since)),
        )
        .order_by("-last_24h", "code")
    )
    return VendingHealth(
        minutes=minutes,
        last_hour_vends=sum(m["vends"] for m in minutes),
        last_hour_with_codes=sum(m["with_codes"] for m in minutes),
        today_vends=today["vends"] or 0,
        today_with_codes=today["with_codes"] or 0,
        current_per_minute=minutes[-1]["vends"],
        errors=[{"code": e["code"], "last_hour": e["last_hour"] or 0, "last_24h": e["last_24h"] or 0} for e in errors],
        queue=sms_queue_depth(),
    )


# --- CSV export ----------------------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def keyset_iterate(queryset: models.QuerySet, *, fields: Sequence[str], chunk: int = 2000) -> Iterator[tuple]:
    """Rows of `queryset` in primary-key order, `chunk` at a time: constant memory, and no OFFSET
    that gets slower with every page."""
    last_pk = None
    base = queryset.order_by("pk")
    while True:
        page_qs = base if last_pk is None else base.filter(pk__gt=last_pk)
        page = list(page_qs.values_list("pk", *fields)[:chunk])
        if not page:
            return
        for row in page:
            yield row[1:]
        last_pk = page[-1][0]
        if len(page) < chunk:
            return


def csv_stream(*, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(header)  # the BOM makes Excel read UTF-8 names correctly
    for row in rows:
        yield writer.writerow(csv_safe_row(row))


@dataclass(frozen=True)
class Export:
    title: str
    header: Sequence[str]
    rows: Callable[[dict[str, str]], Iterable[Sequence[Any]]]


_COUNTER_FIELDS = Campaign.COUNTER_FIELDS
_CAMPAIGN_FIELDS = ("id", "name", "sgcs", "from_krn", "to_krn", "deadline", "daily_capacity", "status")
_BATCH_FIELDS = (
    "id",
    "campaign_id",
    "number",
    "status",
    "scheduled_at",
    "selection_regions",
    "selection_sgcs",
    "selection_limit",
    "capacity_overridden",
    "created_by",
    "created_at",
)
_ENROLLMENT_FIELDS = (
    "id",
    "batch__number",
    "origin",
    "meter__meter_number",
    "meter__region",
    "meter__sgc",
    "meter__phone",
    "state",
    "enrolled_at",
    "notified_at",
    "codes_issued_at",
    "confirmed_at",
    "failed_at",
    "non_compliant_at",
    "note",
)


def _int_param(params: dict[str, str], name: str) -> int | None:
    value = params.get(name, "")
    return int(value) if value.isdigit() else None


def _campaigns_rows(params: dict[str, str]) -> Iterable[Sequence[Any]]:
    return keyset_iterate(Campaign.objects.all(), fields=[*_CAMPAIGN_FIELDS, *_COUNTER_FIELDS, "outside_batch"])


def _batches_rows(params: dict[str, str]) -> Iterable[Sequence[Any]]:
    qs = Batch.objects.all()
    if (campaign_id := _int_param(params, "campaign")) is not None:
        qs = qs.filter(campaign_id=campaign_id)
    return keyset_iterate(qs, fields=[*_BATCH_FIELDS, *_COUNTER_FIELDS])


def _daily_rows(params: dict[str, str]) -> Iterable[Sequence[Any]]:
    qs = CampaignDailyStat.objects.all()
    if (campaign_id := _int_param(params, "campaign")) is not None:
        qs = qs.filter(campaign_id=campaign_id)
    return keyset_iterate(qs, fields=["campaign_id", "day", *DAILY_FIELDS])


def _enrollment_rows(params: dict[str, str]) -> Iterable[Sequence[Any]]:
    qs = Enrollment.objects.all()
    if (batch_id := _int_param(params, "batch")) is not None:
        qs = qs.filter(batch_id=batch_id)
    if (campaign_id := _int_param(params, "campaign")) is not None:
        qs = qs.filter(campaign_id=campaign_id)
    if params.get("state") in Enrollment.State.values:
        qs = qs.filter(state=params["state"])
    return keyset_iterate(qs, fields=_ENROLLMENT_FIELDS)


def _failure_reason_rows(params: dict[str, str]) -> Iterable[Sequence[Any]]:
    batch = Batch.objects.filter(pk=_int_param(params, "batch") or 0).first()
    if batch is None:
        return []
    return [(batch.id, row["reason"], row["count"]) for row in batch_failure_reasons(batch=batch)]


def _vend_minute_rows(params: dict[str, str]) -> Iterable[Sequence[Any]]:
    # Summed over shards; the minute rows of a day are few (1,440).
    rows = (
        VendMinuteStat.objects.values("minute")
        .annotate(vends=Sum("vends"), with_codes=Sum("vends_with_codes"))
        .order_by("minute")
    )
    return ((row["minute"], row["vends"], row["with_codes"]) for row in rows.iterator(chunk_size=2000))


def _api_error_rows(params: dict[str, str]) -> Iterable[Sequence[Any]]:
    return keyset_iterate(ApiErrorStat.objects.all(), fields=["minute", "code", "count"])


EXPORTS: dict[str, Export] = {
    "campaigns": Export("Campaigns", [*_CAMPAIGN_FIELDS, *_COUNTER_FIELDS, "outside_batch"], _campaigns_rows),
    "batches": Export("Batches", [*_BATCH_FIELDS, *_COUNTER_FIELDS], _batches_rows),
    "daily": Export("Daily totals", ["campaign_id", "day", *DAILY_FIELDS], _daily_rows),
    "enrollments": Export(
        "Enrollments",
        [f.replace("meter__", "").replace("batch__number", "batch") for f in _ENROLLMENT_FIELDS],
        _enrollment_rows,
    ),
    "failure-reasons": Export("SMS failure reasons", ["batch_id", "reason", "count"], _failure_reason_rows),
    "vends-per-minute": Export("Vends per minute", ["minute", "vends", "vends_with_codes"], _vend_minute_rows),
    "api-errors": Export("Partner API errors", ["minute", "code", "count"], _api_error_rows),
}


# --- The endgame: who is left, and the projection that knows the plan ----------------------------

LEFT_CACHE_SECONDS = 60
NOTICES_OUT = (Batch.Status.NOTIFYING, Batch.Status.OPEN, Batch.Status.CLOSED)
PLAN_CACHE_SECONDS = 300


@dataclass(frozen=True)
class LeftRegion:
    region: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class WhoIsLeft:
    reasons: Sequence[rules.LeftReason]
    regions: list[LeftRegion]
    totals: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.totals.values())


def campaign_left(*, campaign: Campaign) -> WhoIsLeft:
    """The not-yet-updated by region and reason (`rules.LEFT_REASONS`), largest region first.

    Grouped counts over the campaign's enrollments (campaigns.selectors.left_counts), cached for a
    minute: a manager steering the endgame looks at it a few times an hour, not per request."""
    key = f"dashboard:left:{campaign.pk}"
    counts = cache.get(key)
    if counts is None:
        counts = left_counts(campaign=campaign)
        cache.set(key, counts, LEFT_CACHE_SECONDS)
    keys = [reason.key for reason in rules.LEFT_REASONS]
    by_region: dict[str, dict[str, int]] = {}
    for (region, reason), n in counts.items():
        by_region.setdefault(region, dict.fromkeys(keys, 0))[reason] = n
    regions = sorted(
        (LeftRegion(region=region, counts=row) for region, row in by_region.items()),
        key=lambda r: (-r.total, r.region),
    )
    totals = {key: sum(r.counts[key] for r in regions) for key in keys}
    return WhoIsLeft(reasons=rules.LEFT_REASONS, regions=regions, totals=totals)


def left_cache_clear(*, campaign: Campaign) -> None:
    """After an action (a push, reminders) the page shows the new counts at once."""
    cache.delete(f"dashboard:left:{campaign.pk}")
    cache.delete(f"dashboard:plan:{campaign.pk}")


LEFT_CSV_FIELDS = (
    "meter__meter_number",
    "meter__customer_name",
    "meter__phone",
    "meter__region",
    "meter__sgc",
    "state",
    "batch__number",
    "notified_at",
    "codes_issued_at",
    "failed_at",
    "non_compliant_at",
    "reminders_sent",
    "last_reminder_at",
    "codes_pushed_at",
    "note",
)
LEFT_CSV_HEADER = (
    "meter_number",
    "customer_name",
    "phone",
    "region",
    "sgc",
    "reason",
    "state",
    "batch",
    "notified_at",
    "codes_issued_at",
    "failed_at",
    "non_compliant_at",
    "reminders_sent",
    "last_reminder_at",
    "codes_pushed_at",
    "note",
)


def left_csv_rows(*, campaign: Campaign, reason: str, region: str | None) -> Iterator[Sequence[Any]]:
    """One reason's meters (one region's, if given) for the field teams, in keyset pages."""
    label = next(r.label for r in rules.LEFT_REASONS if r.key == reason)
    for row in keyset_iterate(
        left_enrollments(campaign=campaign, reason=reason, region=region), fields=LEFT_CSV_FIELDS
    ):
        yield [*row[:5], label, *row[5:]]  # csv_stream neutralises each cell (kplc_sts.csvsafe)


@dataclass(frozen=True)
class RegionOutlook:
    region: str
    target: int
    done: int
    expected: int  # more updates the plan and the response curve promise by the deadline
    projected: int

    @property
    def short(self) -> int:
        return max(self.target - self.projected, 0)

    @property
    def misses(self) -> bool:
        return self.short > 0

    @property
    def projected_share(self) -> float:
        return 100.0 * self.projected / self.target if self.target else 100.0


@dataclass(frozen=True)
class PlanProjection:
    curve: dict[int, float | None]
    notify_share: float
    done: int
    expected_open: int  # from batches whose notices went out
    expected_scheduled: int  # from batches still to come
    target: int
    unscheduled: int  # meters of the target in no batch yet
    regions: list[RegionOutlook]

    @property
    def known(self) -> bool:
        return any(share is not None for share in self.curve.values())

    @property
    def projected(self) -> int:
        return min(self.done + self.expected_open + self.expected_scheduled, self.target)

    @property
    def short(self) -> int:
        return max(self.target - self.projected, 0)

    @property
    def missing_regions(self) -> list[RegionOutlook]:
        return [r for r in self.regions if r.misses]


def curve_share(curve: dict[int, float | None], age_days: float) -> float:
    """The share updated `age_days` after the notice: straight lines between the observed points
    (0 at the notice), flat after the last one observed (no response is assumed after it)."""
    points = [(0.0, 0.0)] + [(float(d), share) for d, share in sorted(curve.items()) if share is not None]
    if age_days <= 0:
        return 0.0
    for (d0, s0), (d1, s1) in zip(points, points[1:], strict=False):
        if age_days <= d1:
            return s0 + (s1 - s0) * (age_days - d0) / (d1 - d0)
    return points[-1][1]


def campaign_plan_projection(*, campaign: Campaign, target: int, now: datetime) -> PlanProjection:
    """Meters updated by the deadline if the batches still to come go out as scheduled and every
    batch's customers respond as those notified so far did (`response_curve`: share updated 1, 3,
    7 and 14 days after the notice), per region and in all; the regions that will miss.

    Counted from the enrollments (cached five minutes): the curve and the (batch, region) cohorts."""
    key = f"dashboard:plan:{campaign.pk}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    curve = response_curve(campaign=campaign, now=now)
    cohorts = batch_region_cohorts(campaign=campaign)
    batches = {
        b.pk: b
        for b in Batch.objects.filter(campaign=campaign).only("pk", "status", "scheduled_at", "started_at", "enrolled")
    }
    deadline_end = timezone.make_aware(datetime.combine(campaign.deadline + timedelta(days=1), datetime.min.time()))

    def notified_yet(cohort: dict[str, Any]) -> bool:
        batch = batches[cohort["batch_id"]]
        return batch.started_at is not None or cohort["notified"] > 0 or batch.status in NOTICES_OUT

    started = [c for c in cohorts if notified_yet(c)]
    started_enrolled = sum(c["enrolled"] for c in started)
    notify_share = sum(c["notified"] for c in started) / started_enrolled if started_enrolled else 1.0

    def days(a: datetime, b: datetime) -> float:
        return (b - a).total_seconds() / 86400.0

    expected_by_region: dict[str, float] = {}
    expected_open = expected_scheduled = 0.0
    for cohort in cohorts:
        batch = batches[cohort["batch_id"]]
        if batch.status == Batch.Status.CANCELLED:
            continue
        notice_at = batch.started_at or batch.scheduled_at
        at_deadline = curve_share(curve, days(notice_at, deadline_end))
        if notified_yet(cohort):
            share_now = curve_share(curve, days(notice_at, now))
            sending = batch.status == Batch.Status.NOTIFYING
            reached = max(float(cohort["notified"]), cohort["enrolled"] * notify_share if sending else 0.0)
        else:
            share_now, reached = 0.0, cohort["enrolled"] * notify_share
        # What the curve still promises, never less than nothing, never more than those not done yet.
        expected = min(max(at_deadline - share_now, 0.0) * reached, float(cohort["enrolled"] - cohort["done"]))
        if notified_yet(cohort):
            expected_open += expected
        else:
            expected_scheduled += expected
        region = cohort["meter__region"] or ""
        expected_by_region[region] = expected_by_region.get(region, 0.0) + expected
    targets = region_targets(campaign=campaign)
    done_by_region = {
        row["region"]: row["n"]
        for row in CampaignRegionDay.objects.filter(campaign=campaign).values("region").annotate(n=Sum("done"))
    }
    regions = []
    for region in sorted(set(targets) | set(done_by_region) | set(expected_by_region)):
        region_target, done = targets.get(region, 0), int(done_by_region.get(region) or 0)
        expected = round(expected_by_region.get(region, 0.0))
        regions.append(
            RegionOutlook(
                region=region,
                target=region_target,
                done=done,
                expected=expected,
                projected=min(done + expected, max(region_target, done)),
            )
        )
    regions.sort(key=lambda r: (not r.misses, r.projected_share, r.region))
    projection = PlanProjection(
        curve=curve,
        notify_share=notify_share,
        done=campaign.done,
        expected_open=round(expected_open),
        expected_scheduled=round(expected_scheduled),
        target=target,
        unscheduled=max(target - campaign.enrolled - campaign.outside_batch, 0),
        regions=regions,
    )
    cache.set(key, projection, PLAN_CACHE_SECONDS)
    return projection
