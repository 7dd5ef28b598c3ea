"""Care cases: a customer's problem, opened from USSD or by an agent, worked and closed by care."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import audit_record
from campaigns import services as campaigns
from kplc_sts import clock
from kplc_sts.actors import actor_label as label_for
from meters.models import Meter

from ..models import CareCase, CaseComment

# A case of these kinds is a complaint about the meter's codes or tokens: a purchase under the new
# key waiting out its grace period no longer counts as evidence of update, and an update already
# inferred from one is taken back (campaigns.services.meter_report_complaint).
COMPLAINT_KINDS = frozenset(
    {
        CareCase.Kind.CODE1_REJECTED,
        CareCase.Kind.CODE2_REJECTED,
        CareCase.Kind.TOKEN_REJECTED,
        CareCase.Kind.NO_CODES,
        CareCase.Kind.OTHER,
    }
)


class CareError(ValueError):
    """An action the desk cannot do for this meter right now (the message is shown to the agent)."""


def care_case_open(
    *,
    meter: Meter | None,
    kind: str,
    source: str,
    phone: str = "",
    summary: str = "",
    actor: Any = None,
    actor_label: str = "",
) -> CareCase:
    """Open a case. From USSD, a second report of the same problem joins the open case instead."""
    label = label_for(actor, actor_label)
    with transaction.atomic():
        if source == CareCase.Source.USSD and meter is not None:
            existing = (
                CareCase.objects.select_for_update()
                .filter(meter=meter, kind=kind, source=source, status=CareCase.Status.OPEN)
                .first()
            )
            if existing is not None:
                CaseComment.objects.create(case=existing, author_label=label, body="Reported again on USSD.")
                return existing
        case = CareCase.objects.create(
            meter=meter, kind=kind, source=source, phone=phone, summary=summary[:300], opened_by=label[:100]
        )
        audit_record(action="care_case.opened", actor=actor, actor_label=label, target=case, kind=kind, source=source)
        if meter is not None and kind in COMPLAINT_KINDS:
            campaigns.meter_report_complaint(meter=meter, actor_label=label, reason=f"case {case.reference}")
    return case


def care_case_assign(*, case: CareCase, assignee: Any, actor: Any) -> CareCase:
    with transaction.atomic():
        CareCase.objects.filter(pk=case.pk).update(assigned_to=assignee, assigned_at=clock.now())
        case.refresh_from_db()
        audit_record(
            action="care_case.assigned",
            actor=actor,
            target=case,
            assignee=label_for(assignee) if assignee else "",
        )
    return case


def care_case_comment(*, case: CareCase, body: str, actor: Any) -> CaseComment:
    body = body.strip()
    if not body:
        raise CareError("A comment cannot be empty.")
    with transaction.atomic():
        comment = CaseComment.objects.create(
            case=case,
            author=actor if getattr(actor, "is_authenticated", False) else None,
            author_label=label_for(actor),
            body=body,
        )
        audit_record(action="care_case.commented", actor=actor, target=case)
    return comment


def care_case_close(*, case: CareCase, resolution: str, actor: Any) -> bool:
    """Close an open case; False if it was already closed (two agents clicking at once)."""
    with transaction.atomic():
        closed = CareCase.objects.filter(pk=case.pk, status=CareCase.Status.OPEN).update(
            status=CareCase.Status.CLOSED,
            closed_at=clock.now(),
            closed_by=label_for(actor),
            resolution=resolution[:300],
        )
        if closed:
            audit_record(action="care_case.closed", actor=actor, target=case)
    case.refresh_from_db()
    return bool(closed)
