"""Everything that decides a campaign state change lives in this file, as data.

- which enrollment transitions are allowed (`ENROLLMENT_TRANSITIONS`) and batch transitions
  (`BATCH_TRANSITIONS`);
- what each enrollment state means for the meter (`METER_STATE_FOR`);
- the named state sets other apps ask about (`CODES_DUE`, `UPDATED`);
- which enrollment of a meter is *open*, i.e. its batch has come up (`OPEN_ENROLLMENT`): one
  predicate from which both the ORM filter (`.q()`) and the vend statement's SQL (`.sql()`) are
  built, so the two cannot drift apart.

The services in `campaigns.services` apply these rules; nothing else writes the states.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from meters.models import Meter

from .models import Batch, Campaign, Enrollment

State = Enrollment.State
BatchStatus = Batch.Status

# --- Enrollments ------------------------------------------------------------------------------------

ENROLLMENT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    State.SCHEDULED: frozenset(
        {State.NOTIFIED, State.CODES_ISSUED, State.CONFIRMED, State.FAILED, State.NON_COMPLIANT}
    ),
    State.NOTIFIED: frozenset({State.CODES_ISSUED, State.CONFIRMED, State.FAILED, State.NON_COMPLIANT}),
    State.CODES_ISSUED: frozenset({State.CONFIRMED, State.FAILED, State.NON_COMPLIANT}),
    # A customer who reported the codes rejected still gets the same codes again (no new state).
    State.FAILED: frozenset({State.CONFIRMED, State.NON_COMPLIANT}),
    State.NON_COMPLIANT: frozenset({State.CONFIRMED}),  # a field visit fixed it
    State.CONFIRMED: frozenset(),
}

# States in which a vend still carries the codes.
CODES_DUE: frozenset[str] = frozenset({State.SCHEDULED, State.NOTIFIED, State.CODES_ISSUED, State.FAILED})
# States that need no notice any more: the meter has its codes, is on the new key, or waits for a visit.
UPDATED: frozenset[str] = frozenset({State.CODES_ISSUED, State.CONFIRMED, State.NON_COMPLIANT})
# Meter key states that a new batch may still enroll and a notice may still go to.
KEY_STATES_TO_NOTIFY: frozenset[str] = frozenset({Meter.KeyState.OLD_KEY})

# The timestamp an enrollment gets on entering each state, and the funnel milestones among them.
STATE_TIME: Mapping[str, str] = {
    State.NOTIFIED: "notified_at",
    State.CODES_ISSUED: "codes_issued_at",
    State.CONFIRMED: "confirmed_at",
    State.FAILED: "failed_at",
    State.NON_COMPLIANT: "non_compliant_at",
}
MILESTONES: frozenset[str] = frozenset({State.NOTIFIED, State.CODES_ISSUED, State.CONFIRMED})
CURRENT_COUNTERS: frozenset[str] = frozenset({State.FAILED, State.NON_COMPLIANT})
DAILY_COUNTER: Mapping[str, str] = {
    State.CODES_ISSUED: "codes_issued",
    State.CONFIRMED: "confirmed",
    State.FAILED: "failed",
}


@dataclass(frozen=True)
class MeterState:
    """What the register row says once an enrollment enters a state (None: leave it)."""

    key_state: str | None
    status: str | None


METER_STATE_FOR: Mapping[str, MeterState] = {
    State.SCHEDULED: MeterState(key_state=None, status=None),
    State.NOTIFIED: MeterState(key_state=None, status=None),
    State.CODES_ISSUED: MeterState(key_state=Meter.KeyState.CODES_ISSUED, status=None),
    State.FAILED: MeterState(key_state=None, status=None),
    State.CONFIRMED: MeterState(key_state=Meter.KeyState.CONFIRMED, status=Meter.Status.ACTIVE),
    State.NON_COMPLIANT: MeterState(key_state=Meter.KeyState.NON_COMPLIANT, status=Meter.Status.NON_COMPLIANT),
}


# --- The endgame: reminders, codes sent unasked, evidence of update, who is left ---------------------

# A reminder goes to a meter notified but with no purchase since (no codes), or with its codes out
# and no sign of update (not confirmed, no inference, no purchase under the new key since).
REMINDER_NOTIFIED_STATES: frozenset[str] = frozenset({State.NOTIFIED})
REMINDER_CODES_STATES: frozenset[str] = frozenset({State.CODES_ISSUED})
# Codes may be pushed (sent by SMS without a purchase) to meters whose batch came up and who have
# no codes yet.
PUSH_STATES: frozenset[str] = frozenset({State.SCHEDULED, State.NOTIFIED})
# Only a meter waiting with its codes can be inferred updated from a later purchase under the new
# key (a rejected-code report, FAILED, needs the customer's or care's word).
INFERABLE_STATES: frozenset[str] = frozenset({State.CODES_ISSUED})
# Entering these takes an inference back: a complaint (FAILED), a field visit, or the customer's
# own confirmation, which then counts as "confirmed by customer" instead.
INFERENCE_ENDS: frozenset[str] = frozenset({State.FAILED, State.NON_COMPLIANT, State.CONFIRMED})
# Entering these also forgets the purchase that was waiting out its grace period.
PURCHASE_EVIDENCE_VOID: frozenset[str] = frozenset({State.FAILED, State.NON_COMPLIANT})


@dataclass(frozen=True)
class LeftReason:
    """Why an enrollment is not updated yet, and the action that fits it."""

    key: str
    label: str
    action: str  # "reminder", "push", "field_visit"
    action_label: str


LEFT_REASONS: Sequence[LeftReason] = (
    LeftReason("bad_phone", "Never notified: bad phone", "field_visit", "Field visit (no phone to reach)"),
    LeftReason("no_purchase", "Notified, no purchase", "push", "Send the codes without a purchase"),
    LeftReason("pushed", "Codes sent by SMS, not delivered yet", "reminder", "Send a reminder (*977# gives the codes)"),
    LeftReason("not_typed", "Codes issued, not typed", "reminder", "Send a reminder"),
    LeftReason("rejected", "Reported a rejection", "field_visit", "Field visit (care case)"),
    LeftReason("non_compliant", "Non-compliant, awaiting a field visit", "field_visit", "Field visit"),
)


def left_reason_q(key: str) -> Q:
    """The ORM filter of one "who is left" reason over a campaign's enrollments. "Never notified"
    is an enrollment still scheduled in a batch whose notices have all gone out (the batch opened):
    its notice was refused or failed for good."""
    if key == "bad_phone":
        return Q(
            state=State.SCHEDULED,
            notified_at__isnull=True,
            batch__status__in=[BatchStatus.OPEN, BatchStatus.CLOSED],
        )
    if key == "no_purchase":
        return Q(state=State.NOTIFIED, codes_pushed_at__isnull=True)
    if key == "pushed":
        # A codes push counts as issued on delivery (campaigns.services.pushed_codes_delivered).
        return Q(state=State.NOTIFIED, codes_pushed_at__isnull=False)
    if key == "not_typed":
        return Q(state=State.CODES_ISSUED, inferred_at__isnull=True)
    if key == "rejected":
        return Q(state=State.FAILED)
    if key == "non_compliant":
        return Q(state=State.NON_COMPLIANT)
    raise KeyError(key)


def codes_issue_changes(*, key_state: str, enrollment_state: str | None) -> bool:
    """Whether recording "codes issued" would change anything: the vend skips the call (and its row
    locks) for the many re-deliveries of codes already recorded."""
    if key_state == Meter.KeyState.OLD_KEY:
        return True
    return enrollment_state is not None and State.CODES_ISSUED in ENROLLMENT_TRANSITIONS[enrollment_state]


# --- Batches ----------------------------------------------------------------------------------------

BATCH_TRANSITIONS: Mapping[str, frozenset[str]] = {
    BatchStatus.DRAFT: frozenset({BatchStatus.SCHEDULED, BatchStatus.CANCELLED}),
    BatchStatus.SCHEDULED: frozenset({BatchStatus.NOTIFYING, BatchStatus.PAUSED, BatchStatus.CANCELLED}),
    BatchStatus.NOTIFYING: frozenset({BatchStatus.OPEN, BatchStatus.PAUSED, BatchStatus.CANCELLED}),
    BatchStatus.OPEN: frozenset({BatchStatus.PAUSED, BatchStatus.CLOSED}),
    BatchStatus.PAUSED: frozenset({BatchStatus.SCHEDULED, BatchStatus.NOTIFYING, BatchStatus.CANCELLED}),
    BatchStatus.CLOSED: frozenset(),
    BatchStatus.CANCELLED: frozenset(),
}


def batch_statuses_to(target: str) -> list[str]:
    """The batch statuses from which `target` may be reached (sorted, for a stable IN list)."""
    return sorted(status for status, allowed in BATCH_TRANSITIONS.items() if target in allowed)


def enrollment_states_to(target: str) -> list[str]:
    return sorted(state for state, allowed in ENROLLMENT_TRANSITIONS.items() if target in allowed)


# --- The open enrollment, as one predicate ---------------------------------------------------------
#
# A tiny predicate language over an enrollment's own columns and those of its campaign and batch,
# compiled to an ORM Q and to SQL. NOW stands for the instant asked about.

NOW = object()


@dataclass(frozen=True)
class Cmp:
    field: str  # "state", "campaign__status", "batch__scheduled_at"...
    op: str  # "=", "<>", "<=", "in", "is null"
    value: Any = None


@dataclass(frozen=True)
class All:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    part: Any


_LOOKUP = {"=": "exact", "<=": "lte", "in": "in", "is null": "isnull"}


def _q(node: Any, now: dt.datetime) -> Q:
    if isinstance(node, All):
        q = Q()
        for part in node.parts:
            q &= _q(part, now)
        return q
    if isinstance(node, AnyOf):
        q = Q()
        for part in node.parts:
            q |= _q(part, now)
        return q
    if isinstance(node, Not):
        return ~_q(node.part, now)
    value: Any = now if node.value is NOW else node.value
    if node.op == "<>":
        return ~Q(**{f"{node.field}__exact": value})
    if node.op == "is null":
        return Q(**{f"{node.field}__isnull": True})
    return Q(**{f"{node.field}__{_LOOKUP[node.op]}": list(value) if node.op == "in" else value})


def _sql(node: Any, aliases: Mapping[str, str], now: Any, params: list[Any]) -> str:
    if isinstance(node, All | AnyOf):
        joiner = " AND " if isinstance(node, All) else " OR "
        return "(" + joiner.join(_sql(part, aliases, now, params) for part in node.parts) + ")"
    if isinstance(node, Not):
        return f"NOT {_sql(node.part, aliases, now, params)}"
    relation, _, column = node.field.rpartition("__")
    if not relation and column == "batch":
        column = "batch_id"  # the enrollment's own foreign key column
    column_sql = f"{aliases[relation]}.{column}"
    if node.op == "is null":
        return f"{column_sql} IS NULL"
    value = now if node.value is NOW else node.value
    if node.op == "in":
        params.extend(value)
        return f"{column_sql} IN ({', '.join(['%s'] * len(value))})"
    params.append(value)
    return f"{column_sql} {node.op} %s"


@dataclass(frozen=True)
class EnrollmentPredicate:
    root: Any

    def q(self, *, now: dt.datetime) -> Q:
        """The predicate as a filter on Enrollment querysets."""
        return _q(self.root, now)

    def sql(self, *, aliases: Mapping[str, str], now: Any) -> tuple[str, list[Any]]:
        """The predicate as SQL over enrollment, campaign and batch aliases ({"": "e",
        "campaign": "c", "batch": "b"}; the batch joined with LEFT JOIN). `now` is bound as given."""
        params: list[Any] = []
        return _sql(self.root, aliases, now, params), params


# The meter's enrollment whose batch has come up, in an active campaign: a meter recorded outside
# any batch is open at once; a batch is open from its scheduled time unless it is a draft; a
# cancelled batch's enrollments stay open only for customers it had already notified.
OPEN_ENROLLMENT = EnrollmentPredicate(
    All(
        (
            Cmp("campaign__status", "in", (Campaign.Status.ACTIVE,)),
            AnyOf(
                (
                    Cmp("batch", "is null"),
                    All(
                        (
                            Cmp("batch__scheduled_at", "<=", NOW),
                            Not(Cmp("batch__status", "in", (BatchStatus.DRAFT,))),
                            Not(
                                All(
                                    (
                                        Cmp("batch__status", "=", BatchStatus.CANCELLED),
                                        Cmp("state", "=", State.SCHEDULED),
                                    )
                                )
                            ),
                        )
                    ),
                )
            ),
        )
    )
)
# Newest first: a meter in two campaigns gets the codes of the latest one it was enrolled in.
OPEN_ENROLLMENT_ORDER: Sequence[str] = ("-enrolled_at", "-pk")
