"""Codes without a purchase: send a selection of enrolled meters their update codes by SMS.

The codes are the meter's key change set for the campaign (`key_change_set_issue`: made once,
stored), so the SMS carries exactly what a later vend, USSD or care shows. Each meter is one short
transaction (its TID counter locked first, as a vend does; the enrollment claimed once, the codes
made, the SMS written), so a vend never waits behind a whole push and a second push, or one racing
it, sends nothing twice. The push is audited with its count and cost.

A pushed meter's codes count as issued when the SMS is reported delivered
(`campaigns.services.pushed_codes_delivered`), not when it is queued: the other channels hand the
codes to the customer there and then (receipt, screen), an SMS only if it arrives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from audit.services import audit_record
from campaigns import services as campaigns
from campaigns.models import Batch, Campaign
from campaigns.selectors import push_candidates
from campaigns.texts import codes_only_render
from kplc_sts import clock
from kplc_sts.actors import actor_label as label_for
from meters.models import Meter
from sms.services import messages_queue_many

from .. import errors
from ..keys import MeterKey
from ..sts import pan_from_meter_number
from ..tids import tid_counter_lock
from .key_change import key_change_set_under_lock

logger = logging.getLogger(__name__)


def sms_cost(count: int) -> Decimal:
    """What `count` one-segment SMS cost at SMS_COST_KES."""
    return (Decimal(str(settings.SMS_COST_KES)) * count).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class PushPreview:
    count: int
    cost: Decimal
    batch: Batch | None
    notified_days: int | None


def codes_push_preview(
    *, campaign: Campaign, batch: Batch | None = None, notified_days: int | None = None
) -> PushPreview:
    """How many meters a push would send the codes to, and what the SMS would cost."""
    count = push_candidates(
        campaign=campaign, now=clock.now(), batch_id=batch.pk if batch else None, notified_days=notified_days
    ).count()
    return PushPreview(count=count, cost=sms_cost(count), batch=batch, notified_days=notified_days)


def _push_one(*, enrollment_id: int, meter: Meter, campaign: Campaign, batch_id: int) -> bool:
    with transaction.atomic():
        # The counter first, as a vend locks it: a vend of this meter racing the push waits here.
        tid_counter_lock(meter=meter, key=MeterKey.campaign_target(meter, campaign))
        if not campaigns.enrollment_codes_push_claim(enrollment_id=enrollment_id, at=clock.now()):
            return False  # pushed already, or the meter got its codes since the selection
        key_change_set = key_change_set_under_lock(
            meter=meter, campaign=campaign, pan=pan_from_meter_number(meter.meter_number)
        )
        messages_queue_many(
            rows=[
                (
                    meter.phone,
                    codes_only_render(meter_number=meter.meter_number, codes=list(key_change_set.codes)),
                    meter.pk,
                    batch_id,
                )
            ],
            purpose="codes",
            queue=settings.SMS_NOTICE_QUEUE,  # bulk: never ahead of a customer's codes at the till
        )
    return True


def codes_push(
    *,
    campaign: Campaign,
    batch: Batch | None = None,
    notified_days: int | None = None,
    actor: Any = None,
    actor_label: str = "",
    chunk: int = 500,
) -> int:
    """Send the codes to every meter `push_candidates` selects; returns how many were sent now
    (0 on a second push of the same selection). A meter whose codes cannot be made (its keys
    unsafe) is skipped and logged, never half done."""
    label = label_for(actor, actor_label)
    candidates = push_candidates(
        campaign=campaign, now=clock.now(), batch_id=batch.pk if batch else None, notified_days=notified_days
    ).select_related("meter")
    sent, skipped, last_pk = 0, 0, 0
    while True:
        page = list(candidates.filter(pk__gt=last_pk).order_by("pk")[:chunk])
        if not page:
            break
        last_pk = page[-1].pk
        for enrollment in page:
            assert enrollment.batch_id is not None  # push_candidates selects batch enrollments only
            try:
                pushed = _push_one(
                    enrollment_id=enrollment.pk,
                    meter=enrollment.meter,
                    campaign=campaign,
                    batch_id=enrollment.batch_id,
                )
            except errors.VendError:
                logger.warning("codes push: meter %s skipped, its codes cannot be made", enrollment.meter_id)
                skipped += 1
                continue
            sent += pushed
    audit_record(
        action="campaign.codes_pushed",
        actor=actor,
        actor_label=label,
        target=campaign,
        batch=batch.number if batch else None,
        notified_days=notified_days,
        sent=sent,
        skipped=skipped,
        cost_kes=str(sms_cost(sent)),
    )
    return sent
