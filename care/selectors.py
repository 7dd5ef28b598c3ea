"""Reads for the care desk: everything the meter page tells about one meter, in a few queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from audit.models import AuditEvent
from campaigns.models import Enrollment
from meters.models import Meter
from sms.models import Message
from sms.selectors import MessageRecord, failing_meters_count, messages_of_meter
from tokens.keys import MeterKey
from tokens.models import IssuedToken, KeyChangeSet, ReversalRequest, Vend
from tokens.services import meter_current_key, meter_update_codes

from .models import CareCase

FAILING_STATUSES = (Message.Status.FAILED, Message.Status.REJECTED)


@dataclass
class MeterStory:
    meter: Meter
    current_key: MeterKey
    enrollments: list[Enrollment]  # newest first, with their events and batch
    code_sets: list[KeyChangeSet]  # newest first
    vends: list[Vend]  # newest first, with their partner
    tokens: list[IssuedToken]  # newest first
    messages: list[MessageRecord]  # newest first, outbox and log together
    cases: list[CareCase]  # newest first
    audit_events: list[AuditEvent]  # newest first
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def enrollment(self) -> Enrollment | None:
        return self.enrollments[0] if self.enrollments else None

    @property
    def code_set(self) -> KeyChangeSet | None:
        return self.code_sets[0] if self.code_sets else None

    @property
    def sms_failing(self) -> int:
        return sum(message.status in FAILING_STATUSES for message in self.messages)

    @property
    def open_cases(self) -> list[CareCase]:
        return [case for case in self.cases if case.status == CareCase.Status.OPEN]

    def latest_message(self, purpose: str) -> MessageRecord | None:
        return next((message for message in self.messages if message.purpose == purpose), None)


def meter_story_load(meter: Meter) -> MeterStory:
    code_sets = list(KeyChangeSet.objects.filter(meter=meter).select_related("campaign").order_by("-created_at", "-id"))
    return MeterStory(
        meter=meter,
        current_key=meter_current_key(meter, meter_update_codes(meter=meter)),
        enrollments=list(
            Enrollment.objects.filter(meter=meter)
            .select_related("campaign", "batch")
            .prefetch_related("events")
            .order_by("-enrolled_at", "-id")
        ),
        code_sets=code_sets,
        vends=list(Vend.objects.filter(meter=meter).select_related("partner").order_by("-created_at", "-id")[:20]),
        tokens=list(
            IssuedToken.objects.filter(meter=meter).select_related("vend__partner").order_by("-issued_at", "-id")[:20]
        ),
        messages=messages_of_meter(meter_id=meter.pk, limit=30),
        cases=list(CareCase.objects.filter(meter=meter).select_related("assigned_to").order_by("-opened_at")[:20]),
        audit_events=list(
            AuditEvent.objects.filter(object_type="meters.meter", object_id=str(meter.pk)).order_by("-at", "-id")[:30]
        ),
    )


FAILING_SMS_THRESHOLD = 2  # failed or rejected messages before a meter needs care's attention


@dataclass(frozen=True)
class CareQueues:
    open_cases: int
    unassigned_cases: int
    my_cases: int
    field_visits: int
    failing_sms: int
    open_reversals: int


def care_queues_count(*, user: Any) -> CareQueues:
    """The sizes of the care queues the front door links to (each query rides an index)."""
    cases = CareCase.objects.filter(status=CareCase.Status.OPEN)
    return CareQueues(
        open_cases=cases.count(),
        unassigned_cases=cases.filter(assigned_to__isnull=True).count(),
        my_cases=cases.filter(assigned_to=user).count() if getattr(user, "pk", None) else 0,
        field_visits=Meter.objects.filter(
            Q(status=Meter.Status.NON_COMPLIANT) | Q(key_state=Meter.KeyState.NON_COMPLIANT)
        ).count(),
        failing_sms=failing_meters_count(threshold=FAILING_SMS_THRESHOLD),
        open_reversals=ReversalRequest.objects.filter(status=ReversalRequest.Status.OPEN).count(),
    )
