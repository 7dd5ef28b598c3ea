"""Campaign, batch and enrollment state changes: one service per change, counters bumped in step.

Every state change writes an EnrollmentEvent and bumps the counters on Batch, Campaign and
CampaignDailyStat with F() expressions inside the caller's transaction. Counter rows are always
updated in the same order (batch, campaign, daily stat) so concurrent transactions never deadlock.
Set-based operations (scheduling, notice creation, cancelling) bump them by the rows touched.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from audit.services import audit_record
from meters.models import Meter

from .models import Batch, Campaign, CampaignDailyStat, CampaignSegment, Enrollment, EnrollmentEvent, MeterSegment
from .texts import NON_GSM7_REGEX, gsm7_clean, notice_sql_expression

logger = logging.getLogger(__name__)

State = Enrollment.State


class CampaignError(ValueError):
    pass


class CapacityExceeded(CampaignError):
    def __init__(self, *, day: dt.date, load: int, adding: int, capacity: int) -> None:
        self.day, self.load, self.adding, self.capacity = day, load, adding, capacity
        super().__init__(
            f"{day}: {load} meters already scheduled + {adding} would exceed the daily capacity of {capacity}"
        )


class EnrollmentStateError(CampaignError):
    pass


# --- counters --------------------------------------------------------------------------------


def _local_day(when: dt.datetime) -> dt.date:
    return timezone.localtime(when).date()


def _counters_add(*, batch_id: int | None, campaign_id: int, **deltas: int) -> None:
    deltas = {name: value for name, value in deltas.items() if value}
    if not deltas:
        return
    expressions = {name: F(name) + value for name, value in deltas.items()}
    if batch_id is not None:
        Batch.objects.filter(pk=batch_id).update(**expressions)
    Campaign.objects.filter(pk=campaign_id).update(**expressions)


def _daily_add(*, campaign_id: int, day: dt.date, **deltas: int) -> None:
    deltas = {name: value for name, value in deltas.items() if value}
    if not deltas:
        return
    expressions = {name: F(name) + value for name, value in deltas.items()}
    if CampaignDailyStat.objects.filter(campaign_id=campaign_id, day=day).update(**expressions):
        return
    try:
        with transaction.atomic():
            CampaignDailyStat.objects.create(campaign_id=campaign_id, day=day, **deltas)
    except IntegrityError:
        # Another transaction created the day's row between our UPDATE and INSERT.
        CampaignDailyStat.objects.filter(campaign_id=campaign_id, day=day).update(**expressions)


def batch_messages_counted(*, batch_id: int, sent: int = 0, delivered: int = 0, failed: int = 0) -> None:
    """Called by the SMS pipeline when a batch's message is accepted, delivered or finally failed."""
    campaign_id = Batch.objects.filter(pk=batch_id).values_list("campaign_id", flat=True).first()
    if campaign_id is None:
        return
    _counters_add(
        batch_id=batch_id,
        campaign_id=campaign_id,
        messages_sent=sent,
        messages_delivered=delivered,
        messages_failed=failed,
    )


# --- campaigns -------------------------------------------------------------------------------


def campaign_create(
    *,
    name: str,
    sgcs: Sequence[str],
    from_krn: int,
    to_krn: int,
    deadline: dt.date,
    daily_capacity: int,
    new_base_date: int = 2014,
    rollover: bool = True,
    new_ken: int = 255,
    notice_template: str | None = None,
    codes_template: str | None = None,
    actor: Any = None,
    actor_label: str = "",
) -> Campaign:
    from .texts import validate_codes_template, validate_notice_template

    sgcs = sorted({str(sgc).strip() for sgc in sgcs})
    if not sgcs or not all(len(sgc) == 6 and sgc.isdigit() for sgc in sgcs):
        raise CampaignError("every supply group code must be 6 digits")
    if not (1 <= from_krn <= 9 and 1 <= to_krn <= 9) or from_krn == to_krn:
        raise CampaignError("KRNs must be 1..9 and differ")
    if daily_capacity <= 0:
        raise CampaignError("daily capacity must be positive")
    fields: dict[str, Any] = {}
    if notice_template is not None:
        validate_notice_template(notice_template)
        fields["notice_template"] = notice_template
    if codes_template is not None:
        validate_codes_template(codes_template)
        fields["codes_template"] = codes_template
    label = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system")
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name,
            sgcs=sgcs,
            from_krn=from_krn,
            to_krn=to_krn,
            deadline=deadline,
            daily_capacity=daily_capacity,
            new_base_date=new_base_date,
            rollover=rollover,
            new_ken=new_ken,
            created_by=label,
            **fields,
        )
        audit_record(
            action="campaign.created",
            actor=actor,
            actor_label=label,
            target=campaign,
            sgcs=sgcs,
            from_krn=from_krn,
            to_krn=to_krn,
            daily_capacity=daily_capacity,
        )
    return campaign


# --- segment aggregates (what a new batch can still take) -----------------------------------
#
# The schedule preview must not walk millions of meters: it reads MeterSegment (active meters per
# region, SGC, KRN) minus CampaignSegment (the campaign's enrollments of active meters per region
# and SGC). Both are recounted in the meter import's transaction and kept exact in between by
# every service that enrolls, releases, or changes a meter's status, in the same transaction.


def _segments_live() -> bool:
    """False until the first recount (a register loaded some other way: tests, old databases)."""
    return MeterSegment.objects.exists()


def _upsert_add(model: Any, keys: dict[str, Any], column: str, delta: int) -> None:
    table = model._meta.db_table
    names = [*keys, column]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {column} = {table}.{column} + EXCLUDED.{column}",
            [*keys.values(), delta],
        )


def meter_segments_refresh() -> int:
    """Recount both aggregates from the rows (seconds at 7.4 M meters); returns the segments.

    Called by the meter import inside its transaction, so the counts change with the register.
    """
    meter, enrollment, campaign = Meter._meta.db_table, Enrollment._meta.db_table, Campaign._meta.db_table
    with transaction.atomic():
        # The campaign rows are what batch_schedule locks: no batch is enrolled while we recount.
        list(Campaign.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        MeterSegment.objects.all().delete()
        CampaignSegment.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {MeterSegment._meta.db_table} (region, sgc, krn, status, meters) "  # noqa: S608
                f"SELECT region, sgc, krn, status, COUNT(*) FROM {meter} GROUP BY region, sgc, krn, status"
            )
            segments = cursor.rowcount
            cursor.execute(
                f"INSERT INTO {CampaignSegment._meta.db_table} (campaign_id, region, sgc, enrolled_active) "  # noqa: S608
                f"SELECT e.campaign_id, m.region, m.sgc, COUNT(*) FROM {enrollment} e "
                f"JOIN {meter} m ON m.id = e.meter_id JOIN {campaign} c ON c.id = e.campaign_id "
                "WHERE m.krn = c.from_krn AND m.status = %s GROUP BY e.campaign_id, m.region, m.sgc",
                [Meter.Status.ACTIVE],
            )
    return segments


def register_imported() -> None:
    """Hook for the meter import, inside its transaction: recount what is derived from the register
    (the segments here, and the dashboard's campaign targets when that app is installed)."""
    from django.apps import apps

    meter_segments_refresh()
    if apps.is_installed("dashboard"):
        from dashboard.services import campaign_targets_refresh

        campaign_targets_refresh()


def _segments_enrolled_add(*, campaign: Campaign, enrollments_sql: str, params: Sequence[Any], sign: int) -> None:
    """Add (sign=1) or take away (sign=-1) the given enrollments' active meters, grouped by segment."""
    table = CampaignSegment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, region, sgc, enrolled_active) "  # noqa: S608
            f"SELECT %s, m.region, m.sgc, %s * COUNT(*) FROM {Meter._meta.db_table} m "
            f"WHERE m.id IN ({enrollments_sql}) AND m.krn = %s AND m.status = %s GROUP BY m.region, m.sgc "
            f"ON CONFLICT (campaign_id, region, sgc) DO UPDATE SET enrolled_active = "
            f"{table}.enrolled_active + EXCLUDED.enrolled_active",
            [campaign.pk, sign, *params, campaign.from_krn, Meter.Status.ACTIVE],
        )


def _meter_status_change(*, meter_id: int, to: str) -> None:
    """Keep the segments exact when a meter's status changes (call in the changing transaction)."""
    row = Meter.objects.filter(pk=meter_id).values_list("status", "region", "sgc", "krn").first()
    if row is None or row[0] == to or not _segments_live():
        return
    old, region, sgc, krn = row
    _upsert_add(MeterSegment, {"region": region, "sgc": sgc, "krn": krn, "status": old}, "meters", -1)
    _upsert_add(MeterSegment, {"region": region, "sgc": sgc, "krn": krn, "status": to}, "meters", 1)
    delta = 1 if to == Meter.Status.ACTIVE else -1 if old == Meter.Status.ACTIVE else 0
    if delta:
        campaigns = Enrollment.objects.filter(meter_id=meter_id, campaign__from_krn=krn).values_list(
            "campaign_id", flat=True
        )
        for campaign_id in sorted(campaigns):
            _upsert_add(
                CampaignSegment, {"campaign_id": campaign_id, "region": region, "sgc": sgc}, "enrolled_active", delta
            )


def _wanted_sgcs(campaign: Campaign, sgcs: Iterable[str]) -> list[str]:
    campaign_sgcs = set(campaign.sgcs)
    return sorted(set(sgcs) & campaign_sgcs if sgcs else campaign_sgcs)


def _available_from_segments(*, campaign: Campaign, regions: Sequence[str], sgcs: Sequence[str]) -> int | None:
    """Meters a new batch can still take, from the aggregates (a few dozen rows); None before the
    first recount."""
    if not _segments_live():
        return None
    wanted = _wanted_sgcs(campaign, sgcs)
    active = MeterSegment.objects.filter(sgc__in=wanted, krn=campaign.from_krn, status=Meter.Status.ACTIVE)
    enrolled = CampaignSegment.objects.filter(campaign=campaign, sgc__in=wanted)
    regions = [region for region in regions if region]
    if regions:
        active, enrolled = active.filter(region__in=regions), enrolled.filter(region__in=regions)
    taken = {(region, sgc): count for region, sgc, count in enrolled.values_list("region", "sgc", "enrolled_active")}
    rows = active.values_list("region", "sgc", "meters")
    return sum(max(count - taken.get((region, sgc), 0), 0) for region, sgc, count in rows)


# --- batches ---------------------------------------------------------------------------------


def _candidates(*, campaign: Campaign, regions: Iterable[str], sgcs: Iterable[str]) -> QuerySet[Meter]:
    """Meters the selection may enroll: on the campaign's old key, active, not enrolled yet."""
    queryset = Meter.objects.filter(
        sgc__in=_wanted_sgcs(campaign, sgcs), krn=campaign.from_krn, status=Meter.Status.ACTIVE
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
    available = _available_from_segments(campaign=campaign, regions=regions, sgcs=sgcs)
    if available is None:
        available = _candidates(campaign=campaign, regions=regions, sgcs=sgcs)[: max(limit, 0)].count()
    available = min(available, max(limit, 0))
    day = _local_day(scheduled_at)
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


def _sql_params(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


def _schedule_check(*, campaign: Campaign, day: dt.date, load: int, adding: int, override: bool) -> bool:
    """Raise when nothing matches or the day would go over capacity (unless overridden);
    returns whether it goes over."""
    if adding == 0:
        raise CampaignError("no meters match the selection (or all are already enrolled)")
    over = load + adding > campaign.daily_capacity
    if over and not override:
        raise CapacityExceeded(day=day, load=load, adding=adding, capacity=campaign.daily_capacity)
    return over


def batch_schedule(
    *,
    campaign: Campaign,
    regions: Sequence[str],
    sgcs: Sequence[str],
    limit: int,
    scheduled_at: dt.datetime,
    override_capacity: bool = False,
    actor: Any = None,
    actor_label: str = "",
) -> Batch:
    """Enroll up to `limit` not-yet-enrolled meters in a new batch, in one INSERT ... SELECT.

    Refuses (CapacityExceeded) when the day's scheduled load would exceed the campaign's daily
    capacity, unless `override_capacity` (which is audited).
    """
    if limit <= 0:
        raise CampaignError("limit must be positive")
    if timezone.is_naive(scheduled_at):
        scheduled_at = timezone.make_aware(scheduled_at)
    label = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system")
    day = _local_day(scheduled_at)
    now = timezone.now()
    with transaction.atomic():
        # The campaign row lock serialises scheduling: batch numbers and the capacity check.
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in (Campaign.Status.ACTIVE, Campaign.Status.DRAFT):
            raise CampaignError(f"campaign is {campaign.status}")
        candidates = _candidates(campaign=campaign, regions=regions, sgcs=sgcs)
        load = campaign_day_load(campaign=campaign, day=day)
        # Refuse early from the aggregates (no walk over the register); the INSERT below is the
        # truth and is checked again, so a refusal never depends on them.
        estimate = _available_from_segments(campaign=campaign, regions=regions, sgcs=sgcs)
        if estimate is not None:
            adding = min(estimate, limit)
            _schedule_check(campaign=campaign, day=day, load=load, adding=adding, override=override_capacity)
        number = (campaign.batches.aggregate(n=Max("number"))["n"] or 0) + 1
        batch = Batch.objects.create(
            campaign=campaign,
            number=number,
            selection_regions=sorted(set(regions)),
            selection_sgcs=sorted(set(sgcs)),
            selection_limit=limit,
            scheduled_at=scheduled_at,
            status=Batch.Status.SCHEDULED,
            created_by=label,
        )
        select_sql, select_params = candidates.values("id")[:limit].query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Enrollment._meta.db_table} "  # noqa: S608 - table names from models, values bound
                "(campaign_id, meter_id, batch_id, state, enrolled_at, state_changed_at, note) "
                f"SELECT %s, selected.id, %s, %s, %s, %s, '' FROM ({select_sql}) selected",
                [campaign.pk, batch.pk, State.SCHEDULED, _sql_params(now), _sql_params(now), *select_params],
            )
            enrolled = cursor.rowcount
            # Raising here rolls the batch and its enrollments back: nothing is half-created.
            over = _schedule_check(campaign=campaign, day=day, load=load, adding=enrolled, override=override_capacity)
            if over:
                Batch.objects.filter(pk=batch.pk).update(capacity_overridden=True)
            cursor.execute(
                f"INSERT INTO {EnrollmentEvent._meta.db_table} "  # noqa: S608
                "(enrollment_id, from_state, to_state, at, actor_label, reason) "
                f"SELECT id, '', %s, %s, %s, %s FROM {Enrollment._meta.db_table} WHERE batch_id = %s",
                [State.SCHEDULED, _sql_params(now), label[:100], f"batch {number}", batch.pk],
            )
        if _segments_live():
            _segments_enrolled_add(
                campaign=campaign,
                enrollments_sql=f"SELECT meter_id FROM {Enrollment._meta.db_table} WHERE batch_id = %s",  # noqa: S608
                params=[batch.pk],
                sign=1,
            )
        _counters_add(batch_id=batch.pk, campaign_id=campaign.pk, enrolled=enrolled)
        _daily_add(campaign_id=campaign.pk, day=day, scheduled=enrolled)
        audit_record(
            action="batch.capacity_overridden" if over else "batch.scheduled",
            actor=actor,
            actor_label=label,
            target=batch,
            campaign_id=campaign.pk,
            number=number,
            meters=enrolled,
            day=day.isoformat(),
            day_load_before=load,
            capacity=campaign.daily_capacity,
        )
    batch.refresh_from_db()
    return batch


def _batch_transition(*, batch: Batch, allowed: Sequence[str], to: str, actor: Any, actor_label: str) -> Batch:
    label = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system")
    changed = Batch.objects.filter(pk=batch.pk, status__in=allowed).update(status=to)
    if not changed:
        batch.refresh_from_db()
        raise CampaignError(f"batch {batch.number} is {batch.status}: cannot become {to}")
    audit_record(action=f"batch.{to}", actor=actor, actor_label=label, target=batch)
    batch.refresh_from_db()
    return batch


def batch_pause(*, batch: Batch, actor: Any = None, actor_label: str = "") -> Batch:
    """Stop sending the batch's notices; already-claimed ones finish, queued ones wait."""
    with transaction.atomic():
        return _batch_transition(
            batch=batch,
            allowed=[Batch.Status.SCHEDULED, Batch.Status.NOTIFYING, Batch.Status.OPEN],
            to=Batch.Status.PAUSED,
            actor=actor,
            actor_label=actor_label,
        )


def batch_resume(*, batch: Batch, actor: Any = None, actor_label: str = "") -> Batch:
    """Continue where the batch stopped: before its time it is scheduled again, else it notifies."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.notices_created_at is None:
            target = Batch.Status.SCHEDULED
        else:
            target = Batch.Status.NOTIFYING
        batch = _batch_transition(
            batch=batch, allowed=[Batch.Status.PAUSED], to=target, actor=actor, actor_label=actor_label
        )
        if target == Batch.Status.NOTIFYING:
            from sms.services import message_dispatch_batch

            transaction.on_commit(lambda: message_dispatch_batch(batch_id=batch.pk))
    return batch


def batch_cancel(*, batch: Batch, actor: Any = None, actor_label: str = "") -> Batch:
    """Cancel unsent notices and give back enrollments that were never notified.

    Customers already notified keep their enrollment: they were told codes are coming.
    """
    from sms.models import Message

    label = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system")
    with transaction.atomic():
        batch = _batch_transition(
            batch=batch,
            allowed=[Batch.Status.DRAFT, Batch.Status.SCHEDULED, Batch.Status.NOTIFYING, Batch.Status.PAUSED],
            to=Batch.Status.CANCELLED,
            actor=actor,
            actor_label=label,
        )
        cancelled = Message.objects.filter(
            batch=batch, purpose=Message.Purpose.NOTICE, status=Message.Status.QUEUED
        ).update(status=Message.Status.CANCELLED, failure_reason="BatchCancelled", delivered_at=timezone.now())
        unsent = Enrollment.objects.filter(batch=batch, state=State.SCHEDULED)
        if _segments_live():
            _segments_enrolled_add(
                campaign=batch.campaign,
                enrollments_sql=f"SELECT meter_id FROM {Enrollment._meta.db_table} "  # noqa: S608
                "WHERE batch_id = %s AND state = %s",
                params=[batch.pk, State.SCHEDULED],
                sign=-1,
            )
        EnrollmentEvent.objects.filter(enrollment__in=unsent).delete()
        released = unsent.delete()[1].get(Enrollment._meta.label, 0)
        _counters_add(batch_id=batch.pk, campaign_id=batch.campaign_id, enrolled=-released)
        _daily_add(campaign_id=batch.campaign_id, day=_local_day(batch.scheduled_at), scheduled=-released)
        Batch.objects.filter(pk=batch.pk).update(closed_at=timezone.now())
        audit_record(
            action="batch.cancel_details",
            actor=actor,
            actor_label=label,
            target=batch,
            notices_cancelled=cancelled,
            enrollments_released=released,
        )
    batch.refresh_from_db()
    return batch


def batch_close(*, batch: Batch, actor: Any = None, actor_label: str = "") -> Batch:
    with transaction.atomic():
        batch = _batch_transition(
            batch=batch,
            allowed=[Batch.Status.OPEN, Batch.Status.NOTIFYING, Batch.Status.PAUSED],
            to=Batch.Status.CLOSED,
            actor=actor,
            actor_label=actor_label,
        )
        Batch.objects.filter(pk=batch.pk).update(closed_at=timezone.now())
    return batch


def batch_notices_create(*, batch: Batch, now: dt.datetime | None = None) -> int:
    """Start a due batch: write one notice per enrolled meter with a phone, set-based, once.

    Returns the number of notices written (0 if another process already started the batch).
    """
    from sms.models import Message

    now = now or timezone.now()
    with transaction.atomic():
        started = Batch.objects.filter(
            pk=batch.pk, status=Batch.Status.SCHEDULED, scheduled_at__lte=now, notices_created_at__isnull=True
        ).update(status=Batch.Status.NOTIFYING, started_at=now, notices_created_at=now)
        if not started:
            return 0
        batch = Batch.objects.select_related("campaign").get(pk=batch.pk)
        # SQL cannot run gsm7_clean: the few names GSM-7 cannot carry (curly apostrophes, tildes,
        # emoji) are cleaned in Python, exactly as notice_render does, and joined in by value. The
        # WITH goes inside the INSERT: SQLite reports no rowcount for a statement starting with WITH.
        dirty = (
            Meter.objects.filter(
                enrollments__batch=batch, enrollments__state=State.SCHEDULED, customer_name__regex=NON_GSM7_REGEX
            )
            .values_list("customer_name", flat=True)
            .distinct()
        )
        cleaned = {name: gsm7_clean(name) for name in dirty}
        names_cte, names_join, names_params, name_sql = "", "", [], None
        if cleaned:
            names_cte = f"WITH nc (raw, clean) AS (VALUES {', '.join(['(%s, %s)'] * len(cleaned))}) "
            names_join = "LEFT JOIN nc ON nc.raw = m.customer_name "
            names_params = [value for pair in sorted(cleaned.items()) for value in pair]
            name_sql = "COALESCE(nc.clean, m.customer_name)"
        body_sql, body_params = notice_sql_expression(batch=batch, meter_alias="m", name_sql=name_sql)
        message_table = Message._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {message_table} "  # noqa: S608 - table names from models, values bound
                "(recipient, body, purpose, status, attempts, last_error, failure_reason, currency, "
                "sent_counted, meter_id, batch_id, created_at) "
                f"{names_cte}SELECT m.phone, {body_sql}, %s, %s, 0, '', '', '', %s, m.id, e.batch_id, %s "
                f"FROM {Enrollment._meta.db_table} e JOIN {Meter._meta.db_table} m ON m.id = e.meter_id "
                f"{names_join}WHERE e.batch_id = %s AND e.state = %s AND m.phone <> '' ORDER BY e.id",
                [
                    *names_params,
                    *body_params,
                    Message.Purpose.NOTICE,
                    Message.Status.QUEUED,
                    False,
                    _sql_params(now),
                    batch.pk,
                    State.SCHEDULED,
                ],
            )
            created = cursor.rowcount
        Batch.objects.filter(pk=batch.pk).update(notices_created=created)
        if created == 0:
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.OPEN)
    logger.info("batch %s: %s notices created", batch.pk, created)
    return created


def batches_start_due(*, now: dt.datetime | None = None) -> list[int]:
    """Create the notices of every batch whose time has come, and hand them to the workers."""
    from sms.services import message_dispatch_batch

    now = now or timezone.now()
    started = []
    due = Batch.objects.filter(
        status=Batch.Status.SCHEDULED, scheduled_at__lte=now, campaign__status=Campaign.Status.ACTIVE
    ).order_by("scheduled_at", "pk")
    for batch in due:
        if batch_notices_create(batch=batch, now=now):
            message_dispatch_batch(batch_id=batch.pk)
        started.append(batch.pk)
    return started


def batches_open_finished() -> int:
    """Batches whose notices are all out move from notifying to open."""
    from sms.models import Message

    pending = Message.objects.filter(
        batch=OuterRef("pk"),
        purpose=Message.Purpose.NOTICE,
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
    )
    return Batch.objects.filter(status=Batch.Status.NOTIFYING).filter(~Exists(pending)).update(status=Batch.Status.OPEN)


# --- enrollments -----------------------------------------------------------------------------

_MILESTONES = {
    State.NOTIFIED: "notified_at",
    State.CODES_ISSUED: "codes_issued_at",
    State.CONFIRMED: "confirmed_at",
}
_STATE_TIME = {
    State.NOTIFIED: "notified_at",
    State.CODES_ISSUED: "codes_issued_at",
    State.CONFIRMED: "confirmed_at",
    State.FAILED: "failed_at",
    State.NON_COMPLIANT: "non_compliant_at",
}
_DAILY = {State.CODES_ISSUED: "codes_issued", State.CONFIRMED: "confirmed", State.FAILED: "failed"}


def enrollment_for_meter(meter: Meter) -> Enrollment | None:
    """The meter's enrollment in an active campaign whose batch has reached its time, or None.

    Callers look at `.state`: codes are due unless it is confirmed or non-compliant.
    """
    now = timezone.now()
    return (
        Enrollment.objects.select_related("campaign", "batch")
        .filter(meter=meter, campaign__status=Campaign.Status.ACTIVE, batch__scheduled_at__lte=now)
        .exclude(batch__status__in=[Batch.Status.DRAFT])
        .exclude(Q(batch__status=Batch.Status.CANCELLED) & Q(state=State.SCHEDULED))
        .order_by("-enrolled_at", "-pk")
        .first()
    )


def _enrollment_transition(
    *,
    enrollment: Enrollment,
    to: str,
    allowed: Sequence[str],
    actor_label: str,
    reason: str = "",
    at: dt.datetime | None = None,
) -> bool:
    """Move one enrollment to `to`; False if it is already there, EnrollmentStateError if not allowed."""
    at = at or timezone.now()
    with transaction.atomic():
        current = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
        if current.state == to:
            enrollment.__dict__.update({k: v for k, v in current.__dict__.items() if not k.startswith("_")})
            return False
        if current.state not in allowed:
            raise EnrollmentStateError(f"enrollment {current.pk} is {current.state}: cannot become {to}")
        updates: dict[str, Any] = {"state": to, "state_changed_at": at, _STATE_TIME[to]: at}
        if reason:
            updates["note"] = reason[:200]
        Enrollment.objects.filter(pk=current.pk).update(**updates)
        EnrollmentEvent.objects.create(
            enrollment_id=current.pk,
            from_state=current.state,
            to_state=to,
            at=at,
            actor_label=actor_label[:100],
            reason=reason[:200],
        )
        deltas: dict[str, int] = {}
        milestone = _MILESTONES.get(to)
        if milestone and getattr(current, milestone) is None:
            deltas[to] = 1
        if to in (State.FAILED, State.NON_COMPLIANT):
            deltas[to] = 1
        if current.state in (State.FAILED, State.NON_COMPLIANT):
            deltas[current.state] = deltas.get(current.state, 0) - 1
        _counters_add(batch_id=current.batch_id, campaign_id=current.campaign_id, **deltas)
        if to in _DAILY and deltas.get(to):
            _daily_add(campaign_id=current.campaign_id, day=_local_day(at), **{_DAILY[to]: 1})
    for name, value in updates.items():
        setattr(enrollment, name, value)
    return True


def enrollment_mark_notified(*, enrollment: Enrollment, actor_label: str = "system") -> bool:
    return _enrollment_transition(
        enrollment=enrollment, to=State.NOTIFIED, allowed=[State.SCHEDULED], actor_label=actor_label
    )


def notices_sent(*, batch_id: int, meter_ids: Sequence[int], at: dt.datetime | None = None) -> int:
    """Set-based, for the SMS pipeline: these meters' notices were accepted by the gateway.

    Their enrollments (still scheduled) become notified; the batch's messages_sent counter
    grows by the number of notices. Returns the number of enrollments notified.
    """
    at = at or timezone.now()
    meter_ids = [pk for pk in meter_ids if pk is not None]
    with transaction.atomic():
        campaign_id = Batch.objects.filter(pk=batch_id).values_list("campaign_id", flat=True).first()
        if campaign_id is None:
            return 0
        ids = list(
            Enrollment.objects.select_for_update()
            .filter(batch_id=batch_id, meter_id__in=meter_ids, state=State.SCHEDULED)
            .values_list("pk", flat=True)
        )
        if ids:
            Enrollment.objects.filter(pk__in=ids).update(state=State.NOTIFIED, notified_at=at, state_changed_at=at)
            EnrollmentEvent.objects.bulk_create(
                [
                    EnrollmentEvent(
                        enrollment_id=pk, from_state=State.SCHEDULED, to_state=State.NOTIFIED, at=at, actor_label="sms"
                    )
                    for pk in ids
                ]
            )
        _counters_add(batch_id=batch_id, campaign_id=campaign_id, notified=len(ids), messages_sent=len(meter_ids))
        _daily_add(campaign_id=campaign_id, day=_local_day(at), notices_sent=len(meter_ids))
    return len(ids)


def enrollment_mark_codes_issued(*, enrollment: Enrollment, actor_label: str = "system", reason: str = "") -> bool:
    """The vend service issued the key change codes (call inside its transaction).

    Idempotent: a second vend to the same enrollment returns False and changes nothing.
    """
    with transaction.atomic():
        changed = _enrollment_transition(
            enrollment=enrollment,
            to=State.CODES_ISSUED,
            allowed=[State.SCHEDULED, State.NOTIFIED],
            actor_label=actor_label,
            reason=reason,
        )
        if changed:
            Meter.objects.filter(pk=enrollment.meter_id, key_state=Meter.KeyState.OLD_KEY).update(
                key_state=Meter.KeyState.CODES_ISSUED, updated_at=timezone.now()
            )
    return changed


def enrollment_confirm(*, enrollment: Enrollment, actor_label: str, reason: str = "") -> bool:
    """The customer (USSD) or care confirmed the meter took the codes."""
    with transaction.atomic():
        changed = _enrollment_transition(
            enrollment=enrollment,
            to=State.CONFIRMED,
            allowed=[State.SCHEDULED, State.NOTIFIED, State.CODES_ISSUED, State.FAILED, State.NON_COMPLIANT],
            actor_label=actor_label,
            reason=reason,
        )
        if changed:
            _meter_status_change(meter_id=enrollment.meter_id, to=Meter.Status.ACTIVE)
            Meter.objects.filter(pk=enrollment.meter_id).update(
                key_state=Meter.KeyState.CONFIRMED, status=Meter.Status.ACTIVE, updated_at=timezone.now()
            )
    return changed


def enrollment_mark_failed(*, enrollment: Enrollment, actor_label: str, reason: str = "") -> bool:
    """The meter rejected the codes (customer report on USSD, or care)."""
    return _enrollment_transition(
        enrollment=enrollment,
        to=State.FAILED,
        allowed=[State.SCHEDULED, State.NOTIFIED, State.CODES_ISSUED],
        actor_label=actor_label,
        reason=reason,
    )


def enrollment_flag_non_compliant(*, enrollment: Enrollment, actor_label: str, reason: str) -> bool:
    """Care: the meter cannot take the codes; it leaves the to-do count for a field visit."""
    with transaction.atomic():
        changed = _enrollment_transition(
            enrollment=enrollment,
            to=State.NON_COMPLIANT,
            allowed=[State.SCHEDULED, State.NOTIFIED, State.CODES_ISSUED, State.FAILED],
            actor_label=actor_label,
            reason=reason,
        )
        if changed:
            _meter_status_change(meter_id=enrollment.meter_id, to=Meter.Status.NON_COMPLIANT)
            Meter.objects.filter(pk=enrollment.meter_id).update(
                status=Meter.Status.NON_COMPLIANT, key_state=Meter.KeyState.NON_COMPLIANT, updated_at=timezone.now()
            )
            audit_record(
                action="enrollment.non_compliant",
                actor_label=actor_label,
                target=enrollment,
                meter=enrollment.meter_id,
                reason=reason[:200],
            )
    return changed
