"""Demo care-desk work, so a newcomer finds every care queue populated and meters at each step of
their story: codes bought at a bank and waiting to be typed, a customer who typed a code wrong and
reported it on *977#, one whose SMS keep failing, one confirmed, one for a field visit.

The meters are the first batch's (whatever their notice's progress: with Celery the notices may
still be on their way). Purchases go through the vend service as a partner's would, so every
figure on the desk comes from real rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TextIO

from campaigns.models import Batch, Enrollment
from meters.models import Meter
from partners.demo import DEMO_PARTNER
from partners.models import Partner
from sms.fake_gateway import DEMO_REFUSED_NUMBER
from tokens.services import vend_create

from .explain import token_explain
from .models import CareCase
from .services import care_case_open, meter_codes_send, meter_confirm, meter_flag_non_compliant

AGENT = "user:agent"


def _first_batch_meters(count: int) -> list[Meter]:
    batch = Batch.objects.order_by("scheduled_at", "pk").first()
    if batch is None:
        return []
    enrollments = Enrollment.objects.filter(batch=batch).select_related("meter").order_by("meter__meter_number")
    return [enrollment.meter for enrollment in enrollments[:count]]


def _buy(partner: Partner, meter: Meter, amount: str, reference: str) -> None:
    vend_create(
        partner=partner,
        meter_number=meter.meter_number,
        amount=Decimal(amount),
        reference=reference,
        customer_phone=meter.phone,
    )


def _mistyped(digits: str) -> str:
    """The code as a customer might type it: the eighth digit wrong."""
    return digits[:7] + str((int(digits[7]) + 1) % 10) + digits[8:]


def seed(stdout: TextIO) -> None:
    meters = _first_batch_meters(6)
    partner = Partner.objects.filter(name=DEMO_PARTNER).first()
    if len(meters) < 6 or partner is None:
        stdout.write("care: no first batch or no demo partner, no demo care work\n")
        return
    waiting, typo, no_codes, failing, confirmed, old_meter = meters

    # Codes bought at the bank with a purchase; the SMS arrives; the customer has not typed them yet.
    _buy(partner, waiting, "200.00", "DEMO-0001")

    # Bought, typed update code 1 wrong, said so on *977#; the agent decoded what they typed.
    _buy(partner, typo, "500.00", "DEMO-0002")
    typo.refresh_from_db()
    care_case_open(
        meter=typo,
        kind=CareCase.Kind.CODE1_REJECTED,
        source=CareCase.Source.USSD,
        phone=typo.phone,
        summary="Customer reported on *977# that the meter rejected update code 1.",
        actor_label=f"ussd:{typo.phone}",
    )
    code1 = typo.key_change_sets.get().codes[0]
    token_explain(meter=typo, typed=_mistyped(code1), actor_label=AGENT)

    # Paid through the bank app, says nothing arrived: the agent opened a case.
    care_case_open(
        meter=no_codes,
        kind=CareCase.Kind.NO_CODES,
        source=CareCase.Source.AGENT,
        phone=no_codes.phone,
        summary="Paid through the bank app, says no codes or token arrived.",
        actor_label=AGENT,
    )

    # A phone the gateway refuses (the local gateway runs with --refuse-demo-number): the codes SMS
    # and care's resend both fail, so the meter lands in the "SMS keep failing" queue.
    Meter.objects.filter(pk=failing.pk).update(phone=DEMO_REFUSED_NUMBER)
    failing.refresh_from_db()
    _buy(partner, failing, "100.00", "DEMO-0003")
    failing.refresh_from_db()
    meter_codes_send(meter=failing, actor_label=AGENT)

    # Bought, typed everything, confirmed on *977#.
    _buy(partner, confirmed, "1000.00", "DEMO-0004")
    confirmed.refresh_from_db()
    meter_confirm(
        meter=confirmed,
        origin=Enrollment.Origin.USSD,
        actor_label=f"ussd:{confirmed.phone}",
        reason="customer confirmed on *977#",
    )

    meter_flag_non_compliant(
        meter=old_meter, reason="Pre-2014 meter model, cannot take key change tokens", actor_label=AGENT
    )
    stdout.write(
        f"care: meters {waiting.meter_number} (codes bought, waiting), {typo.meter_number} (update code 1 "
        f"mistyped, case open), {failing.meter_number} (SMS keep failing), {confirmed.meter_number} (confirmed); "
        f"{no_codes.meter_number} has an open case and {old_meter.meter_number} needs a field visit\n"
    )
