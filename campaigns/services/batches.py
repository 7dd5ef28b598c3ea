"""Batches: scheduling (set-based enrollment), pause, resume, cancel, and starting their notices.

Lock order, everywhere: campaign row (scheduling), batch row, enrollments, then the counter rows
(batch, campaign, daily stat), so concurrent transactions never deadlock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import audit_record
from kplc_sts import clock
from kplc_sts.actors import actor_label as label_for
from kplc_sts.db import sql_value, table_analyze
from meters.models import Meter
from sms import services as sms

from .. import rules
from ..errors import CampaignError, CapacityExceeded
from ..models import Batch, Campaign, Enrollment, EnrollmentEvent
from ..selectors import available_from_segments, batch_candidates, campaign_day_load
from ..texts import NON_GSM7_REGEX, gsm7_clean, notice_sql_expression
from .counters import counters_add, daily_add
from .segments import segments_enrolled_add

logger = logging.getLogger(__name__)

State = Enrollment.State
Status = Batch.Status


def _schedule_check(*, campaign: Campaign, day: dt.date, load: int, adding: int, override: bool) -> bool:
    """Raise when nothing matches or the day would go over capacity (unless overridden);
    returns whether it goes over."""
    if adding == 0:
        raise CampaignError("no meters match the selection (or all are already enrolled or updated)")
    over = load + adding > campaign.daily_capacity
    if over and not override:
        raise CapacityExceeded(day=day, load=load, adding=adding, capacity=campaign.daily_capacity)
    return over


def _enroll_selected(*, campaign: Campaign, batch: Batch, select_sql: str, select_params: Sequence[Any]) -> int:
    """INSERT ... SELECT the selected meters as the batch's enrollments, with their events."""
    now = sql_value(batch.created_at)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Enrollment._meta.db_table} "  # noqa: S608 - table names from models, values bound
            "(campaign_id, meter_id, batch_id, origin, state, enrolled_at, state_changed_at, note) "
            f"SELECT %s, selected.id, %s, %s, %s, %s, %s, '' FROM ({select_sql}) selected",
            [campaign.pk, batch.pk, Enrollment.Origin.BATCH, State.SCHEDULED, now, now, *select_params],
        )
        enrolled = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {EnrollmentEvent._meta.db_table} "  # noqa: S608
            "(enrollment_id, from_state, to_state, at, actor_label, reason) "
            f"SELECT id, '', %s, %s, %s, %s FROM {Enrollment._meta.db_table} WHERE batch_id = %s",
            [State.SCHEDULED, now, batch.created_by[:100], f"batch {batch.number}", batch.pk],
        )
    return enrolled


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
    """Enroll up to `limit` meters not yet enrolled or updated in a new batch, in one INSERT ... SELECT.

    Refuses (CapacityExceeded) when the day's scheduled load would exceed the campaign's daily
    capacity, unless `override_capacity` (which is audited).
    """
    if limit <= 0:
        raise CampaignError("limit must be positive")
    if timezone.is_naive(scheduled_at):
        scheduled_at = timezone.make_aware(scheduled_at)
    label = label_for(actor, actor_label)
    day = clock.localdate(scheduled_at)
    with transaction.atomic():
        # The campaign row lock serialises scheduling: batch numbers and the capacity check.
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in (Campaign.Status.ACTIVE, Campaign.Status.DRAFT):
            raise CampaignError(f"campaign is {campaign.status}")
        load = campaign_day_load(campaign=campaign, day=day)
        # Refuse early from the aggregates (no walk over the register); the INSERT below is the
        # truth and is checked again, so a refusal never depends on them.
        estimate = available_from_segments(campaign=campaign, regions=regions, sgcs=sgcs)
        if estimate is not None:
            _schedule_check(
                campaign=campaign, day=day, load=load, adding=min(estimate, limit), override=override_capacity
            )
        number = (campaign.batches.aggregate(n=Max("number"))["n"] or 0) + 1
        batch = Batch.objects.create(
            campaign=campaign,
            number=number,
            selection_regions=sorted(set(regions)),
            selection_sgcs=sorted(set(sgcs)),
            selection_limit=limit,
            scheduled_at=scheduled_at,
            status=Status.SCHEDULED,
            created_by=label[:100],
            created_at=clock.now(),
        )
        candidates = batch_candidates(campaign=campaign, regions=regions, sgcs=sgcs)
        select_sql, select_params = candidates.values("id")[:limit].query.sql_with_params()
        enrolled = _enroll_selected(campaign=campaign, batch=batch, select_sql=select_sql, select_params=select_params)
        # Raising here rolls the batch and its enrollments back: nothing is half-created.
        over = _schedule_check(campaign=campaign, day=day, load=load, adding=enrolled, override=override_capacity)
        if over:
            Batch.objects.filter(pk=batch.pk).update(capacity_overridden=True)
        segments_enrolled_add(
            campaign=campaign,
            meter_ids_sql=f"SELECT meter_id FROM {Enrollment._meta.db_table} WHERE batch_id = %s",  # noqa: S608
            params=[batch.pk],
            sign=1,
        )
        counters_add(batch_id=batch.pk, campaign_id=campaign.pk, enrolled=enrolled)
        daily_add(campaign_id=campaign.pk, day=day, scheduled=enrolled)
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
        # The batch's enrollments are what the outbox's count-sent looks up by meter from now on.
        transaction.on_commit(lambda: table_analyze(Enrollment))
    batch.refresh_from_db()
    return batch


def _batch_transition(*, batch: Batch, to: str, actor: Any, actor_label: str) -> Batch:
    """Move the batch to `to` if `rules.BATCH_TRANSITIONS` allows it from its current status."""
    label = label_for(actor, actor_label)
    changed = Batch.objects.filter(pk=batch.pk, status__in=rules.batch_statuses_to(to)).update(status=to)
    if not changed:
        batch.refresh_from_db()
        raise CampaignError(f"batch {batch.number} is {batch.get_status_display().lower()}: it cannot be {to}")
    audit_record(action=f"batch.{to}", actor=actor, actor_label=label, target=batch)
    batch.refresh_from_db()
    return batch


def batch_pause(*, batch: Batch, actor: Any = None, actor_label: str = "") -> Batch:
    """Stop sending the batch's notices; already-claimed ones finish, queued ones are held."""
    with transaction.atomic():
        batch = _batch_transition(batch=batch, to=Status.PAUSED, actor=actor, actor_label=actor_label)
        sms.notices_hold(batch_id=batch.pk)
    return batch


def batch_resume(*, batch: Batch, actor: Any = None, actor_label: str = "") -> Batch:
    """Continue where the batch stopped: before its notices were written it is scheduled again,
    else its held notices go out."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        target = Status.SCHEDULED if batch.notices_created_at is None else Status.NOTIFYING
        batch = _batch_transition(batch=batch, to=target, actor=actor, actor_label=actor_label)
        if target == Status.NOTIFYING:
            sms.notices_release(batch_id=batch.pk)
    return batch


def batch_cancel(*, batch: Batch, actor: Any = None, actor_label: str = "") -> Batch:
    """Cancel unsent notices and give back enrollments that were never notified.

    Customers already notified keep their enrollment: they were told codes are coming.
    """
    label = label_for(actor, actor_label)
    with transaction.atomic():
        batch = _batch_transition(batch=batch, to=Status.CANCELLED, actor=actor, actor_label=label)
        cancelled = sms.notices_cancel(batch_id=batch.pk, reason="BatchCancelled")
        unsent = Enrollment.objects.filter(batch=batch, state=State.SCHEDULED)
        segments_enrolled_add(
            campaign=batch.campaign,
            meter_ids_sql=f"SELECT meter_id FROM {Enrollment._meta.db_table} "  # noqa: S608
            "WHERE batch_id = %s AND state = %s",
            params=[batch.pk, State.SCHEDULED],
            sign=-1,
        )
        EnrollmentEvent.objects.filter(enrollment__in=unsent).delete()
        released = unsent.delete()[1].get(Enrollment._meta.label, 0)
        counters_add(batch_id=batch.pk, campaign_id=batch.campaign_id, enrolled=-released)
        daily_add(campaign_id=batch.campaign_id, day=clock.localdate(batch.scheduled_at), scheduled=-released)
        Batch.objects.filter(pk=batch.pk).update(closed_at=clock.now())
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


def _notice_rows_sql(batch: Batch) -> tuple[str, list[Any], str, list[Any]]:
    """(WITH clause, its params, SELECT of recipient/body/meter/batch, its params) for the batch's notices.

    SQL cannot run gsm7_clean: the few names GSM-7 cannot carry (curly apostrophes, tildes, emoji)
    are cleaned in Python, exactly as notice_render does, and joined in by value.
    """
    dirty = (
        Meter.objects.filter(
            enrollments__batch=batch, enrollments__state=State.SCHEDULED, customer_name__regex=NON_GSM7_REGEX
        )
        .values_list("customer_name", flat=True)
        .distinct()
    )
    cleaned = {name: gsm7_clean(name) for name in dirty}
    with_sql, names_join, with_params, name_sql = "", "", [], None
    if cleaned:
        with_sql = f"WITH nc (raw, clean) AS (VALUES {', '.join(['(%s, %s)'] * len(cleaned))}) "
        names_join = "LEFT JOIN nc ON nc.raw = m.customer_name "
        with_params = [value for pair in sorted(cleaned.items()) for value in pair]
        name_sql = "COALESCE(nc.clean, m.customer_name)"
    body_sql, body_params = notice_sql_expression(batch=batch, meter_alias="m", name_sql=name_sql)
    key_states = sorted(rules.KEY_STATES_TO_NOTIFY)
    select = (
        f"SELECT m.phone, {body_sql}, m.id, e.batch_id "  # noqa: S608 - table names from models, values bound
        f"FROM {Enrollment._meta.db_table} e JOIN {Meter._meta.db_table} m ON m.id = e.meter_id "
        f"{names_join}WHERE e.batch_id = %s AND e.state = %s AND m.phone <> '' "
        f"AND m.key_state IN ({', '.join(['%s'] * len(key_states))}) ORDER BY e.id"
    )
    return with_sql, with_params, select, [*body_params, batch.pk, State.SCHEDULED, *key_states]


def batch_notices_create(*, batch: Batch, now: dt.datetime | None = None) -> int:
    """Start a due batch: write one notice per enrolled meter that still needs one, set-based, once.

    A meter that was updated meanwhile (codes at the till, confirmed on USSD, flagged by care) has
    left the scheduled state and gets no notice. Returns the notices written (0 if another process
    already started the batch).
    """
    now = now or clock.now()
    with transaction.atomic():
        started = Batch.objects.filter(
            pk=batch.pk, status=Status.SCHEDULED, scheduled_at__lte=now, notices_created_at__isnull=True
        ).update(status=Status.NOTIFYING, started_at=now, notices_created_at=now)
        if not started:
            return 0
        batch = Batch.objects.select_related("campaign").get(pk=batch.pk)
        with_sql, with_params, select_sql, select_params = _notice_rows_sql(batch)
        created = sms.notices_insert_from(
            with_sql=with_sql, with_params=with_params, rows_sql=select_sql, rows_params=select_params, at=now
        )
        # When they were written, not when the start began: a meter whose update committed before the
        # INSERT read the enrollments got none, and must have been updated before this instant.
        written_at = max(now, clock.now())
        Batch.objects.filter(pk=batch.pk).update(notices_created=created, notices_created_at=written_at)
        if created == 0:
            Batch.objects.filter(pk=batch.pk).update(status=Status.OPEN)
    logger.info("batch %s: %s notices created", batch.pk, created)
    return created


def batches_start_due(*, now: dt.datetime | None = None) -> list[int]:
    """Create the notices of every batch whose time has come, and hand them to the workers."""
    now = now or clock.now()
    started = []
    due = Batch.objects.filter(
        status=Status.SCHEDULED, scheduled_at__lte=now, campaign__status=Campaign.Status.ACTIVE
    ).order_by("scheduled_at", "pk")
    for batch in due:
        if batch_notices_create(batch=batch, now=now):
            sms.notices_dispatch(batch_id=batch.pk)
        started.append(batch.pk)
    return started


def batches_open_finished(*, batch_ids: Sequence[int] | None = None) -> int:
    """Batches whose notices are all out (none queued, held or sending) move from notifying to open."""
    notifying = Batch.objects.filter(status=Status.NOTIFYING)
    if batch_ids is not None:
        notifying = notifying.filter(pk__in=list(batch_ids))
    candidates = list(notifying.values_list("pk", flat=True))
    if not candidates:
        return 0
    finished = sorted(set(candidates) - sms.batches_with_notices_pending(batch_ids=candidates))
    if not finished:
        return 0
    return Batch.objects.filter(pk__in=finished, status=Status.NOTIFYING).update(status=Status.OPEN)
