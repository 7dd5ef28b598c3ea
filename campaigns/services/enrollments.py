"""A meter's campaign state: the only code that writes enrollment states, `Meter.status` and
`Meter.key_state`, with the funnel and daily counters and the segment aggregates in step.

Other apps report what happened and this module decides what it means, by `campaigns.rules`:

- `meter_mark_codes_issued`: a vend or USSD issued the key change codes;
- `meter_mark_confirmed`: the customer (USSD) or care confirmed the meter took them;
- `meter_mark_non_compliant`: care flagged the meter for a field visit;
- `meter_mark_codes_rejected`: the customer reported the meter rejected the codes;
- `notices_sent`: the outbox says these notices were accepted by the gateway.

A meter in a campaign's target moves however it got there: its enrollment, if it has one (in a
batch that has come up or not), moves with it; if it has none, an enrollment is recorded outside
any batch, with `origin` saying where the update came from (the till, USSD or care), so the
campaign's funnel counts every update. Only a meter no active campaign covers changes alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction

from kplc_sts import clock
from kplc_sts.db import transaction_joined
from meters.models import Meter

from .. import rules
from ..errors import EnrollmentStateError
from ..models import Batch, Campaign, Enrollment, EnrollmentEvent
from ..selectors import campaign_covering, enrollment_for_meter
from .counters import counters_add, daily_add, region_done_add
from .segments import segment_enrollment_added, segment_meter_status_moved

State = Enrollment.State
Origin = Enrollment.Origin

_KEY_STATE_RANK: dict[str, int] = {
    Meter.KeyState.OLD_KEY: 0,
    Meter.KeyState.CODES_ISSUED: 1,
    Meter.KeyState.CONFIRMED: 2,
    Meter.KeyState.NON_COMPLIANT: 2,
}


# --- The register row ---------------------------------------------------------------------------


def meter_state_set(*, meter: Meter, key_state: str | None = None, status: str | None = None) -> bool:
    """Set the meter's key state and/or status, keeping the segment aggregates exact.

    "Codes issued" never takes a meter back from confirmed or non-compliant. Call inside the
    transaction that made the change; returns whether the row changed.
    """
    with transaction_joined():
        current = (
            Meter.objects.select_for_update().only("pk", "status", "key_state", "region", "sgc", "krn").get(pk=meter.pk)
        )
        updates: dict[str, Any] = {}
        if key_state is not None and key_state != current.key_state:
            backwards = _KEY_STATE_RANK[key_state] < _KEY_STATE_RANK[current.key_state]
            if not (key_state == Meter.KeyState.CODES_ISSUED and backwards):
                updates["key_state"] = key_state
        if status is not None and status != current.status:
            updates["status"] = status
        if not updates:
            return False
        Meter.objects.filter(pk=meter.pk).update(**updates, updated_at=clock.now())
        if "status" in updates:
            segment_meter_status_moved(meter=current, old=current.status, new=updates["status"])
    for name, value in updates.items():
        setattr(meter, name, value)
    return True


def _meter_follow(enrollment_state: str, meter: Meter) -> None:
    target = rules.METER_STATE_FOR[enrollment_state]
    if target.key_state is not None or target.status is not None:
        meter_state_set(meter=meter, key_state=target.key_state, status=target.status)


# --- One enrollment's move --------------------------------------------------------------------------


def _deltas(before: Enrollment, to: str) -> dict[str, int]:
    """The counter changes of moving `before` (its state and milestone times) to `to`."""
    deltas: dict[str, int] = {}
    if to in rules.MILESTONES and getattr(before, rules.STATE_TIME[to]) is None:
        deltas[to] = 1
    if to in rules.CURRENT_COUNTERS:
        deltas[to] = deltas.get(to, 0) + 1
    if before.state in rules.CURRENT_COUNTERS:
        deltas[before.state] = deltas.get(before.state, 0) - 1
    if to in rules.UPDATED and not before.reached_done:
        deltas["done"] = 1
    if to in rules.INFERENCE_ENDS and before.inferred_at is not None:
        deltas["inferred"] = -1
    return deltas


def _daily_deltas(to: str, deltas: dict[str, int]) -> dict[str, int]:
    daily = {"done": deltas["done"]} if deltas.get("done") else {}
    column = rules.DAILY_COUNTER.get(to)
    if column and deltas.get(to, 0) > 0:
        daily[column] = 1
    return daily


def _enrollment_move(
    *, enrollment: Enrollment, to: str, actor_label: str, reason: str, at: dt.datetime, region: str | None = None
) -> bool:
    """Move one enrollment to `to` with its event and counters; False if it is already there,
    EnrollmentStateError if `rules.ENROLLMENT_TRANSITIONS` does not allow it (raised before any
    write: callers inside a vend's transaction catch it and carry on). `region`: the meter's, when
    the caller holds the meter (else read when the move counts in the progress by region)."""
    with transaction_joined():
        current = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
        if current.state == to:
            _copy_fields(current, enrollment)
            return False
        if to not in rules.ENROLLMENT_TRANSITIONS[current.state]:
            raise EnrollmentStateError(f"enrollment {current.pk} is {current.state}: cannot become {to}")
        updates: dict[str, Any] = {"state": to, "state_changed_at": at}
        if getattr(current, rules.STATE_TIME[to]) is None:
            updates[rules.STATE_TIME[to]] = at  # when it first got there: the funnel's and the day's
        if reason:
            updates["note"] = reason[:200]
        if to in rules.INFERENCE_ENDS and current.inferred_at is not None:
            updates["inferred_at"] = None
        if to in rules.PURCHASE_EVIDENCE_VOID and current.new_key_purchase_at is not None:
            updates["new_key_purchase_at"] = None
        if to == State.FAILED:
            updates["complained_at"] = at
        Enrollment.objects.filter(pk=current.pk).update(**updates)
        EnrollmentEvent.objects.create(
            enrollment_id=current.pk,
            from_state=current.state,
            to_state=to,
            at=at,
            actor_label=actor_label[:100],
            reason=reason[:200],
        )
        deltas = _deltas(current, to)
        counters_add(batch_id=current.batch_id, campaign_id=current.campaign_id, **deltas)
        daily_add(campaign_id=current.campaign_id, day=clock.localdate(at), **_daily_deltas(to, deltas))
        if deltas.get("done"):
            if region is None:
                region = Meter.objects.filter(pk=current.meter_id).values_list("region", flat=True).first() or ""
            region_done_add(campaign_id=current.campaign_id, region=region, day=clock.localdate(at))
    for name, value in updates.items():
        setattr(enrollment, name, value)
    return True


def _copy_fields(source: Enrollment, target: Enrollment) -> None:
    for field in Enrollment._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def _enrollment_record(
    *, campaign: Campaign, meter: Meter, to: str, origin: str, actor_label: str, reason: str, at: dt.datetime
) -> Enrollment:
    """Record an enrollment, outside any batch, for a meter that reached `to` without one.

    If another transaction recorded it first (the unique (campaign, meter)), that one is moved.
    """
    try:
        with transaction.atomic():
            enrollment = Enrollment.objects.create(
                campaign=campaign,
                meter=meter,
                batch=None,
                origin=origin,
                state=to,
                enrolled_at=at,
                state_changed_at=at,
                note=reason[:200],
                **{rules.STATE_TIME[to]: at},
            )
    except IntegrityError:
        existing = Enrollment.objects.get(campaign=campaign, meter=meter)
        _enrollment_move(enrollment=existing, to=to, actor_label=actor_label, reason=reason, at=at)
        return existing
    EnrollmentEvent.objects.create(
        enrollment_id=enrollment.pk,
        from_state="",
        to_state=to,
        at=at,
        actor_label=actor_label[:100],
        reason=(reason or f"recorded outside any batch ({enrollment.get_origin_display().lower()})")[:200],
    )
    segment_enrollment_added(campaign=campaign, meter=meter)
    blank = Enrollment(state=State.SCHEDULED)  # the counters count it as if it had been scheduled
    deltas = {**_deltas(blank, to), "outside_batch": 1}
    counters_add(batch_id=None, campaign_id=campaign.pk, **deltas)
    daily_add(campaign_id=campaign.pk, day=clock.localdate(at), **_daily_deltas(to, deltas))
    if deltas.get("done"):
        region_done_add(campaign_id=campaign.pk, region=meter.region, day=clock.localdate(at))
    return enrollment


def _enrollment_of(
    meter: Meter, campaign: Campaign | None, now: dt.datetime
) -> tuple[Enrollment | None, Campaign | None]:
    """The enrollment an update of `meter` moves (for `campaign`, or whichever campaign the meter is
    in now), and that campaign; (None, campaign) when it has none yet; (None, None) when no
    active campaign covers the meter."""
    if campaign is None:
        open_enrollment = enrollment_for_meter(meter, now=now)
        if open_enrollment is not None:
            return open_enrollment, open_enrollment.campaign
        campaign = campaign_covering(meter)
        if campaign is None:
            return None, None
    existing = Enrollment.objects.filter(campaign=campaign, meter=meter).first()
    return existing, campaign


def _meter_mark(
    *,
    meter: Meter,
    to: str,
    origin: str,
    actor_label: str,
    reason: str,
    campaign: Campaign | None = None,
    enrollment: Enrollment | None = None,
    at: dt.datetime | None = None,
) -> bool:
    at = at or clock.now()
    with transaction_joined():
        if enrollment is None or (campaign is not None and enrollment.campaign_id != campaign.pk):
            enrollment, campaign = _enrollment_of(meter, campaign, at)
        if enrollment is not None:
            region = None if "region" in meter.get_deferred_fields() else meter.region
            changed = _enrollment_move(
                enrollment=enrollment, to=to, actor_label=actor_label, reason=reason, at=at, region=region
            )
        elif campaign is not None:
            _enrollment_record(
                campaign=campaign, meter=meter, to=to, origin=origin, actor_label=actor_label, reason=reason, at=at
            )
            changed = True
        else:
            changed = False
        target = rules.METER_STATE_FOR[to]
        changed = meter_state_set(meter=meter, key_state=target.key_state, status=target.status) or changed
    return changed


# --- What other apps report ---------------------------------------------------------------------------


def meter_mark_codes_issued(
    *,
    meter: Meter,
    campaign: Campaign,
    origin: str,
    actor_label: str,
    enrollment: Enrollment | None = None,
    reason: str = "",
    at: dt.datetime | None = None,
) -> bool:
    """The meter's key change codes for `campaign` were issued (a vend or USSD; call inside its
    transaction). Idempotent; never refuses: a meter already further along keeps its state."""
    try:
        return _meter_mark(
            meter=meter,
            to=State.CODES_ISSUED,
            origin=origin,
            actor_label=actor_label,
            reason=reason,
            campaign=campaign,
            enrollment=enrollment,
            at=at,
        )
    except EnrollmentStateError:
        # Confirmed, failed or with care: the codes are re-sent and the enrollment keeps its state;
        # a meter still on the old key is nonetheless now waiting for the customer to type them.
        meter_state_set(meter=meter, key_state=Meter.KeyState.CODES_ISSUED)
        return False


def meter_mark_confirmed(*, meter: Meter, origin: str, actor_label: str, reason: str = "") -> bool:
    """The meter took the codes (the customer on USSD, or care)."""
    return _meter_mark(meter=meter, to=State.CONFIRMED, origin=origin, actor_label=actor_label, reason=reason)


def meter_mark_non_compliant(*, meter: Meter, origin: str, actor_label: str, reason: str) -> bool:
    """Care: the meter cannot take the codes; it leaves the to-do count for a field visit."""
    return _meter_mark(meter=meter, to=State.NON_COMPLIANT, origin=origin, actor_label=actor_label, reason=reason)


def meter_mark_codes_rejected(*, meter: Meter, actor_label: str, reason: str = "") -> bool:
    """The customer reported the meter rejected the codes. Only an open enrollment records it (a
    meter with none has nothing to reject yet: the care case is what matters)."""
    enrollment = enrollment_for_meter(meter, now=clock.now())
    if enrollment is None:
        return False
    return enrollment_mark_failed(enrollment=enrollment, actor_label=actor_label, reason=reason)


# --- One enrollment, for callers that hold it -------------------------------------------------------


def _enrollment_mark(*, enrollment: Enrollment, to: str, actor_label: str, reason: str = "") -> bool:
    with transaction.atomic():
        changed = _enrollment_move(enrollment=enrollment, to=to, actor_label=actor_label, reason=reason, at=clock.now())
        if changed:
            _meter_follow(to, Meter(pk=enrollment.meter_id))
    return changed


def enrollment_mark_notified(*, enrollment: Enrollment, actor_label: str = "system") -> bool:
    return _enrollment_mark(enrollment=enrollment, to=State.NOTIFIED, actor_label=actor_label)


def enrollment_mark_codes_issued(*, enrollment: Enrollment, actor_label: str = "system", reason: str = "") -> bool:
    return _enrollment_mark(enrollment=enrollment, to=State.CODES_ISSUED, actor_label=actor_label, reason=reason)


def enrollment_confirm(*, enrollment: Enrollment, actor_label: str, reason: str = "") -> bool:
    return _enrollment_mark(enrollment=enrollment, to=State.CONFIRMED, actor_label=actor_label, reason=reason)


def enrollment_mark_failed(*, enrollment: Enrollment, actor_label: str, reason: str = "") -> bool:
    return _enrollment_mark(enrollment=enrollment, to=State.FAILED, actor_label=actor_label, reason=reason)


def enrollment_flag_non_compliant(*, enrollment: Enrollment, actor_label: str, reason: str) -> bool:
    return _enrollment_mark(enrollment=enrollment, to=State.NON_COMPLIANT, actor_label=actor_label, reason=reason)


# --- The outbox's report ------------------------------------------------------------------------------


def notices_sent(*, batch_id: int, meter_ids: Sequence[int], at: dt.datetime | None = None) -> int:
    """Set-based: these meters' notices were accepted by the gateway.

    Every one of their enrollments not yet counted as notified reaches that milestone (notified_at,
    the funnel's notified): the customer was told, even when the meter got its codes at the till
    between the gateway taking the notice and the outbox counting it (a worker lost in between,
    whose sends the sweep adopts minutes later). Only those still scheduled change state. The
    day's notices_sent grows by the number of notices. Returns the number of enrollments notified.
    """
    at = at or clock.now()
    meter_ids = [pk for pk in meter_ids if pk is not None]
    with transaction.atomic():
        campaign_id = Batch.objects.filter(pk=batch_id).values_list("campaign_id", flat=True).first()
        if campaign_id is None:
            return 0
        # order_by("pk"): the model's default ordering joins batch and campaign, and FOR UPDATE then
        # locks those rows too, before the enrollments, against the lock order every other move
        # keeps (enrollment, batch, campaign): vends deadlocked with it (found by the rehearsal).
        rows = list(
            Enrollment.objects.select_for_update()
            .filter(batch_id=batch_id, meter_id__in=meter_ids, notified_at__isnull=True)
            .order_by("pk")
            .values_list("pk", "state")
        )
        scheduled = [pk for pk, state in rows if state == State.SCHEDULED]
        later = [pk for pk, state in rows if state != State.SCHEDULED]
        if scheduled:
            Enrollment.objects.filter(pk__in=scheduled).update(
                state=State.NOTIFIED, notified_at=at, state_changed_at=at
            )
            EnrollmentEvent.objects.bulk_create(
                [
                    EnrollmentEvent(
                        enrollment_id=pk, from_state=State.SCHEDULED, to_state=State.NOTIFIED, at=at, actor_label="sms"
                    )
                    for pk in scheduled
                ]
            )
        if later:
            Enrollment.objects.filter(pk__in=later).update(notified_at=at)
        counters_add(batch_id=batch_id, campaign_id=campaign_id, notified=len(rows))
        daily_add(campaign_id=campaign_id, day=clock.localdate(at), notices_sent=len(meter_ids))
    return len(rows)
