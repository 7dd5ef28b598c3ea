"""The campaign's endgame: reminders, codes sent without a purchase, and evidence of update.

- `reminder_rule_save` / `reminders_send`: a campaign's reminder rule and the SMS it sends
  (through the outbox, `Message.Purpose.REMINDER`, never in quiet hours);
- `enrollment_codes_push_claim` / `pushed_codes_delivered`: an enrollment is taken, once, for a
  codes push (`tokens.services.codes_push` makes and sends the codes), and its codes count as
  issued when the SMS is reported delivered: a customer whose phone never got it has no codes;
- `enrollment_new_key_purchase` / `updates_infer` / `meter_report_complaint`: a purchase under
  the new key after the codes is evidence of update once the grace period passes with no complaint
  (`ENDGAME_INFERENCE_GRACE_DAYS`); a later complaint takes the inference back.

Enrollment fields and counters change here only, as everywhere in campaigns.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from audit.services import audit_record
from kplc_sts import clock
from kplc_sts.actors import actor_label as label_for
from meters.models import Meter
from sms.quiet import quiet_hours
from sms.services import messages_queue_many

from .. import rules
from ..models import Campaign, Enrollment, EnrollmentEvent, ReminderRule
from ..selectors import enrollment_for_meter, reminder_rule_for, reminders_due
from ..texts import TemplateError, reminder_render, validate_reminder_template
from .counters import counters_add, counters_add_many
from .enrollments import meter_mark_codes_issued

logger = logging.getLogger(__name__)
PUSH_DELIVERED_REASON = "codes sent by SMS without a purchase (codes push), reported delivered"
State = Enrollment.State
REMINDER_CHUNK = 1000


# --- Reminders ------------------------------------------------------------------------------------


def reminder_rule_save(
    *,
    campaign: Campaign,
    enabled: bool,
    notified_days: int,
    codes_days: int,
    max_per_meter: int,
    template: str,
    actor: Any = None,
    actor_label: str = "",
) -> ReminderRule:
    """Create or change the campaign's reminder rule (template checked like the notices'); audited."""
    validate_reminder_template(template)
    if notified_days < 1 or codes_days < 1:
        raise TemplateError("reminders wait at least one day after the notice or the codes")
    if not 1 <= max_per_meter <= 10:
        raise TemplateError("at most 1 to 10 reminders per meter")
    label = label_for(actor, actor_label)
    with transaction.atomic():
        rule, _ = ReminderRule.objects.update_or_create(
            campaign=campaign,
            defaults={
                "enabled": enabled,
                "notified_days": notified_days,
                "codes_days": codes_days,
                "max_per_meter": max_per_meter,
                "template": template,
                "updated_at": clock.now(),
                "updated_by": label[:100],
            },
        )
        audit_record(
            action="campaign.reminder_rule_saved",
            actor=actor,
            actor_label=label,
            target=campaign,
            enabled=enabled,
            notified_days=notified_days,
            codes_days=codes_days,
            max_per_meter=max_per_meter,
        )
    return rule


def reminders_send(
    *, campaign: Campaign, now: dt.datetime | None = None, dry_run: bool = False, limit: int | None = None
) -> int:
    """Write one reminder SMS for each meter the campaign's rule finds due (`reminders_due`), at
    most `limit` (ENDGAME_REMINDERS_PER_RUN) this run; returns how many (a dry run only counts).

    Nothing is written in quiet hours: the meters stay due and the first run after them sends (the
    rule is re-read then, so a meter updated overnight gets nothing). A meter is counted with its
    message in one transaction, and rows another run holds are skipped, so two runs at once never
    remind a meter twice.
    """
    now = now or clock.now()
    rule = reminder_rule_for(campaign)
    if not rule.enabled or campaign.status != Campaign.Status.ACTIVE:
        return 0
    limit = settings.ENDGAME_REMINDERS_PER_RUN if limit is None else limit
    due = reminders_due(campaign=campaign, rule=rule, now=now)
    if dry_run:
        return min(due.count(), limit)
    if quiet_hours(now):
        return 0
    sent = 0
    while sent < limit:
        with transaction.atomic():
            rows = list(
                due.select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values_list(
                    "pk", "batch_id", "meter_id", "meter__meter_number", "meter__customer_name", "meter__phone"
                )[: min(REMINDER_CHUNK, limit - sent)]
            )
            if not rows:
                break
            Enrollment.objects.filter(pk__in=[row[0] for row in rows]).update(
                reminders_sent=F("reminders_sent") + 1, last_reminder_at=now
            )
            messages_queue_many(
                rows=[
                    (
                        phone,
                        reminder_render(
                            template=rule.template, meter_number=number, name=name or "", deadline=campaign.deadline
                        ),
                        meter_id,
                        batch_id,
                    )
                    for _, batch_id, meter_id, number, name, phone in rows
                ],
                purpose="reminder",
            )
        sent += len(rows)
    if sent:
        logger.info("campaign %s: %d reminders queued", campaign.pk, sent)
    return sent


def reminders_send_all(*, now: dt.datetime | None = None) -> int:
    """Every active campaign with its reminder rule on (the beat task, unless ENDGAME_REMINDERS_BY_BEAT
    is off)."""
    if not settings.ENDGAME_REMINDERS_BY_BEAT:
        return 0
    campaigns = Campaign.objects.filter(status=Campaign.Status.ACTIVE, reminder_rule__enabled=True)
    return sum(reminders_send(campaign=campaign, now=now) for campaign in campaigns)


# --- Codes without a purchase ----------------------------------------------------------------------


def enrollment_codes_push_claim(*, enrollment_id: int, at: dt.datetime) -> bool:
    """Take an enrollment for a codes push, once: False if it was pushed already, got its codes
    another way, or left the states a push serves. Call in the push's transaction."""
    return bool(
        Enrollment.objects.filter(
            pk=enrollment_id,
            codes_pushed_at__isnull=True,
            codes_issued_at__isnull=True,
            state__in=sorted(rules.PUSH_STATES),
        ).update(codes_pushed_at=at)
    )


def pushed_codes_delivered(*, meter_ids: Sequence[int], at: dt.datetime) -> int:
    """The codes SMS of these meters was delivered: each pushed enrollment still without codes
    has them issued at `at` (a vend, USSD or care may have issued them first: then nothing).
    Called in the transaction that settled the SMS; returns how many enrollments moved."""
    pending = list(
        Enrollment.objects.filter(
            meter_id__in=sorted(set(meter_ids)), codes_pushed_at__isnull=False, codes_issued_at__isnull=True
        )
        .select_related("meter", "campaign")
        .order_by("pk")  # not the model's ordering, which joins (and would lock) batch and campaign
    )
    moved = 0
    for enrollment in pending:
        moved += meter_mark_codes_issued(
            meter=enrollment.meter,
            campaign=enrollment.campaign,
            origin=Enrollment.Origin.BATCH,
            actor_label="codes push (delivered)",
            enrollment=enrollment,
            reason=PUSH_DELIVERED_REASON,
            at=at,
        )
    return moved


# --- Evidence of update ----------------------------------------------------------------------------


def enrollment_new_key_purchase(*, enrollment: Enrollment, at: dt.datetime) -> bool:
    """A purchase under the new key after the codes went out (a vend reports it, in its
    transaction): the first since the last complaint starts the grace period. One statement,
    only when the facts the vend loaded say it may change anything."""
    if (
        enrollment.state not in rules.INFERABLE_STATES
        or enrollment.new_key_purchase_at is not None
        or enrollment.codes_issued_at is None
        or enrollment.codes_issued_at >= at
    ):
        return False
    return bool(
        Enrollment.objects.filter(
            pk=enrollment.pk,
            state__in=sorted(rules.INFERABLE_STATES),
            new_key_purchase_at__isnull=True,
            codes_issued_at__lt=at,
        ).update(new_key_purchase_at=at)
    )


def updates_infer(*, now: dt.datetime | None = None, chunk: int = 1000) -> int:
    """Count as updated ("inferred from purchase") every waiting enrollment whose purchase under
    the new key is older than the grace period with no complaint since (a complaint clears the
    purchase). Set-based per chunk, counters in step; returns how many (the beat task)."""
    now = now or clock.now()
    cutoff = now - dt.timedelta(days=settings.ENDGAME_INFERENCE_GRACE_DAYS)
    inferred = 0
    while True:
        with transaction.atomic():
            rows = list(
                Enrollment.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    campaign__status=Campaign.Status.ACTIVE,
                    state__in=sorted(rules.INFERABLE_STATES),
                    new_key_purchase_at__lte=cutoff,
                    inferred_at__isnull=True,
                    confirmed_at__isnull=True,
                )
                .order_by("pk")
                .values_list("pk", "batch_id", "campaign_id")[:chunk]
            )
            if not rows:
                return inferred
            Enrollment.objects.filter(pk__in=[row[0] for row in rows]).update(inferred_at=now)
            counters_add_many(
                field="inferred",
                batches=[batch_id for _, batch_id, _ in rows],
                campaigns=[campaign_id for _, _, campaign_id in rows],
            )
            EnrollmentEvent.objects.bulk_create(
                [
                    EnrollmentEvent(
                        enrollment_id=pk,
                        from_state=State.CODES_ISSUED,
                        to_state=State.CODES_ISSUED,
                        at=now,
                        actor_label="system",
                        reason="inferred updated: a purchase under the new key and no complaint in the grace period",
                    )
                    for pk, _, _ in rows
                ]
            )
        inferred += len(rows)


def meter_report_complaint(*, meter: Meter, actor_label: str, reason: str = "", at: dt.datetime | None = None) -> bool:
    """A complaint about the meter's codes or tokens (a care case): the purchase waiting out its
    grace period no longer counts, and an inference already made is taken back. Returns whether
    an inference was taken back."""
    at = at or clock.now()
    enrollment = enrollment_for_meter(meter, now=at)
    if enrollment is None:
        return False
    with transaction.atomic():
        current = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
        undone = current.inferred_at is not None
        Enrollment.objects.filter(pk=current.pk).update(inferred_at=None, new_key_purchase_at=None, complained_at=at)
        if undone:
            counters_add(batch_id=current.batch_id, campaign_id=current.campaign_id, inferred=-1)
            EnrollmentEvent.objects.create(
                enrollment_id=current.pk,
                from_state=current.state,
                to_state=current.state,
                at=at,
                actor_label=actor_label[:100],
                reason=(f"inference from purchase taken back: {reason}" if reason else "inference taken back")[:200],
            )
    return undone
