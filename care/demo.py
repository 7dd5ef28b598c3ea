"""Demo care-desk work: cases opened from USSD and by an agent, and a meter for the field-visit queue."""

from __future__ import annotations

from typing import TextIO

from campaigns.models import Enrollment

from .models import CareCase
from .services import care_case_open, meter_flag_non_compliant


def seed(stdout: TextIO) -> None:
    notified = list(
        Enrollment.objects.filter(state=Enrollment.State.NOTIFIED).select_related("meter").order_by("id")[:3]
    )
    if len(notified) < 3:
        stdout.write("care: no notified meters, no demo cases\n")
        return
    rejected, missing, old_meter = (enrollment.meter for enrollment in notified)
    care_case_open(
        meter=rejected,
        kind=CareCase.Kind.CODE1_REJECTED,
        source=CareCase.Source.USSD,
        phone=rejected.phone,
        summary="Customer reported on *977# that the meter rejected code 1.",
        actor_label=f"ussd:{rejected.phone}",
    )
    care_case_open(
        meter=missing,
        kind=CareCase.Kind.NO_CODES,
        source=CareCase.Source.AGENT,
        phone=missing.phone,
        summary="Paid through the bank app, says no codes or token arrived.",
        actor_label="seed_demo",
    )
    meter_flag_non_compliant(
        meter=old_meter, reason="Pre-2014 meter model, cannot take key change tokens", actor_label="seed_demo"
    )
    stdout.write(f"care: 2 open cases; meter {old_meter.meter_number} flagged for a field visit\n")
