"""What the care desk says first about a meter: one line of where it stands, in plain words, the
agent's next step, and the meter's story as a timeline (notice, codes, SMS, typed, confirmed).

Pure functions over a loaded `care.selectors.MeterStory`: no queries, so each wording is testable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.models import Enrollment
from kplc_sts.formats import staff_datetime
from meters.models import Meter
from sms.models import Message
from sms.selectors import MessageRecord
from tokens.models import IssuedToken, KeyChangeSet, Vend

from .models import CareCase
from .selectors import FAILING_STATUSES, MeterStory

Purpose = Message.Purpose
SmsStatus = Message.Status

# Audit actions on a meter that belong in its timeline (state changes are told by the enrollment).
AUDIT_LINES = {
    "care.codes_sent": "Update codes re-sent by SMS",
    "vend.sms_resent": "Last token re-sent by SMS",
    "token.digits_viewed": "Token digits shown on the desk",
}
VERDICT_WORDS = {
    "typo_format": "a typing mistake (wrong number of digits)",
    "typo": "a typing mistake in one of this meter's tokens",
    "wrong_meter": "a token of another meter",
    "not_for_this_meter": "not a token for this meter",
    "old_key": "a token made under the old key",
    "needs_codes_first": "a new-key token typed before the update codes",
    "already_used": "a token already used",
    "older_than_last": "a token older than the last one",
    "key_change_code": "one of this meter's update codes",
    "test_token": "a test token",
    "extended_token": "an extended-token-set token",
    "valid": "a valid token the meter should accept",
}


def actor_display(label: str, names: Mapping[str, str] | None = None) -> str:
    """The one way the desk names who did something: "agent", "the customer on *977# (+2547…)",
    "Demo Bank" (`names` maps labels such as "partner:1" to what the meter's records call them)."""
    if names and label in names:
        return names[label]
    kind, _, rest = (label or "system").partition(":")
    if not rest:
        return kind
    return {
        "user": rest,
        "ussd": f"the customer on *977# ({rest})",
        "partner": f"partner {rest}",
        "command": f"command {rest}",
    }.get(kind, label)


@dataclass(frozen=True)
class DeskStatus:
    line: str  # where the meter stands, in one sentence
    next_step: str  # what the agent does now
    tone: str  # "ok", "wait", "warn" or "bad": the colour of the line


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # "notice", "codes", "sms", "vend", "typed", "confirmed", "case", "care", "flag", "token"
    title: str
    detail: str = ""
    tone: str = ""  # "", "ok", "warn" or "bad"

    @property
    def when(self) -> str:
        return staff_datetime(self.at)


def _when(moment: dt.datetime | None) -> str:
    return staff_datetime(moment) if moment else "at an unknown time"


def _sms_words(message: MessageRecord | None) -> tuple[str, str]:
    """("SMS delivered 1 Dec 2026 22:19", tone) for the latest message of a purpose."""
    if message is None:
        return "", ""
    if message.status == SmsStatus.DELIVERED:
        return f"SMS delivered {_when(message.delivered_at)}", "ok"
    if message.status in FAILING_STATUSES:
        reason = message.failure_reason or message.get_status_display().lower()
        return f"SMS failed ({reason}) {_when(message.delivered_at or message.created_at)}", "bad"
    if message.status == SmsStatus.SENT:
        return f"SMS sent {_when(message.sent_at)}, not yet reported delivered", "wait"
    if message.status == SmsStatus.HELD:
        return "SMS held (its batch is paused)", "wait"
    if message.status == SmsStatus.CANCELLED:
        return "SMS cancelled with its batch", "warn"
    return f"SMS queued {_when(message.created_at)}", "wait"


def _codes_origin(story: MeterStory, code_set: KeyChangeSet) -> str:
    """How the codes reached the customer: "with a KES 200.00 purchase at Demo Bank"."""
    vend = next((v for v in reversed(story.vends) if v.key_change_set_id == code_set.pk), None)
    if vend is not None:
        return f"with a KES {vend.amount} purchase at {vend.partner.name}"
    enrollment = story.enrollment
    if enrollment is not None and enrollment.origin == Enrollment.Origin.USSD:
        return "on *977#"
    return "by care"


def desk_status(story: MeterStory) -> DeskStatus:
    meter, enrollment = story.meter, story.enrollment
    if meter.status in (Meter.Status.BLOCKED, Meter.Status.RETIRED):
        return DeskStatus(
            f"Meter {meter.get_status_display().lower()} in the register: no token can be sold for it.",
            "Check the register entry with the back office before sending any codes or tokens.",
            "bad",
        )
    if meter.key_state == Meter.KeyState.NON_COMPLIANT or meter.status == Meter.Status.NON_COMPLIANT:
        when = enrollment.non_compliant_at if enrollment else None
        reason = f": {enrollment.note}" if enrollment and enrollment.note else ""
        return DeskStatus(
            f"Flagged for a field visit {_when(when)}{reason}. The meter cannot take update codes.",
            "Nothing to type: a KPLC technician visits. Tell the customer KPLC will call them; do not send codes.",
            "warn",
        )
    if meter.key_state == Meter.KeyState.CONFIRMED:
        confirmed = enrollment.confirmed_at if enrollment else None
        who = _last_actor(enrollment, Enrollment.State.CONFIRMED)
        return DeskStatus(
            f"Confirmed on the new key (revision {story.current_key.krn}) {_when(confirmed)}"
            + (f" by {who}" if who else "")
            + ".",
            "Nothing more to type: the customer buys and loads tokens as usual. If the meter refuses a token, "
            "decode it below.",
            "ok",
        )
    code_set = story.code_set
    if meter.key_state == Meter.KeyState.CODES_ISSUED and code_set is not None:
        sms, tone = _sms_words(story.latest_message(Purpose.CODES))
        line = f"Update codes issued {_when(code_set.created_at)} {_codes_origin(story, code_set)}"
        line += f"; {sms}" if sms else "; no SMS (no registered phone)"
        line += "; waiting for the customer to type them."
        if tone == "bad":
            step = (
                "The codes SMS did not arrive: check the phone number with the customer, then resend the update "
                "codes (or a supervisor reads them out after showing the digits)."
            )
        else:
            step = (
                "Ask whether the meter took update code 1, then update code 2, then the token. If it refused one, "
                "decode the digits the customer typed below; once it accepted them all, mark it confirmed."
            )
        return DeskStatus(line, step, "bad" if tone == "bad" else "wait")
    return _before_codes(story)


def _last_actor(enrollment: Enrollment | None, state: str) -> str:
    if enrollment is None:
        return ""
    events = [event for event in enrollment.events.all() if event.to_state == state]
    return actor_display(events[-1].actor_label) if events else ""


def _before_codes(story: MeterStory) -> DeskStatus:
    meter, enrollment = story.meter, story.enrollment
    krn = meter.krn
    if enrollment is None:
        return DeskStatus(
            f"Not in an update batch yet: the meter is still on key revision {krn}.",
            "Nothing to type now: the customer gets an SMS before the meter's update. If they buy now, the "
            "purchase brings the update codes only once the meter is due.",
            "wait",
        )
    batch = f"batch {enrollment.batch.number}" if enrollment.batch else "outside any batch"
    notice, tone = _sms_words(story.latest_message(Purpose.NOTICE))
    if enrollment.state == Enrollment.State.SCHEDULED:
        when = _when(enrollment.batch.scheduled_at) if enrollment.batch else "soon"
        return DeskStatus(
            f"Scheduled in {batch}: the notice SMS goes out {when}" + (f" ({notice})" if notice else "") + ".",
            "Tell the customer to load all unused tokens before then; update codes 1 and 2 come with the next "
            "purchase after the notice (or on *977#).",
            "wait",
        )
    if enrollment.state == Enrollment.State.FAILED:
        return DeskStatus(
            f"Marked failed {_when(enrollment.failed_at)}" + (f": {enrollment.note}" if enrollment.note else "") + ".",
            "Find out which step the meter refused: decode what the customer typed below, resend the update codes, "
            "or flag the meter for a field visit.",
            "bad",
        )
    if tone == "bad":
        return DeskStatus(
            f"Notice {notice} ({batch}); the meter is still on key revision {krn}.",
            "Check the phone number with the customer. Tell them to load all unused tokens now; their next "
            "purchase brings update codes 1 and 2 (or they get them on *977#).",
            "bad",
        )
    return DeskStatus(
        f"Notice {notice or 'sent'} ({batch}); update codes 1 and 2 come with the next purchase.",
        "Tell the customer to load all unused tokens now, then buy as usual: the purchase brings update codes "
        "1 and 2 to type first (or they get them on *977#, menu 1).",
        "wait",
    )


# --- the timeline ------------------------------------------------------------------------------------


def meter_timeline(story: MeterStory) -> list[TimelineEntry]:
    """The meter's story, oldest first: enrollment steps, purchases, SMS, what the customer typed,
    cases and care's actions."""
    entries: list[TimelineEntry] = []
    names = {f"partner:{vend.partner_id}": vend.partner.name for vend in story.vends}
    has_notice_sms = any(message.purpose == Purpose.NOTICE for message in story.messages)
    for enrollment in story.enrollments:
        entries += _enrollment_entries(enrollment, names, has_notice_sms=has_notice_sms)
    entries += [_vend_entry(vend) for vend in story.vends]
    entries += [_message_entry(message) for message in story.messages]
    entries += [_token_entry(token) for token in story.tokens if token.kind == IssuedToken.Kind.MANAGEMENT]
    for case in story.cases:
        entries += _case_entries(case)
    for event in story.audit_events:
        entry = _audit_entry(event.action, event.at, event.actor_label, event.details or {})
        if entry is not None:
            entries.append(entry)
    return sorted(entries, key=lambda entry: entry.at)


def _enrollment_entries(
    enrollment: Enrollment, names: Mapping[str, str], *, has_notice_sms: bool
) -> list[TimelineEntry]:
    """The enrollment's steps; "notified" only when the notice SMS itself is not in the story
    (its own entry says what became of it)."""
    batch = f"batch {enrollment.batch.number}" if enrollment.batch else enrollment.get_origin_display().lower()
    entries = []
    for event in enrollment.events.all():
        who = actor_display(event.actor_label, names)
        reason = event.reason
        if event.to_state == Enrollment.State.SCHEDULED:
            when = f", notice due {_when(enrollment.batch.scheduled_at)}" if enrollment.batch else ""
            entries.append(TimelineEntry(event.at, "notice", f"Scheduled in {batch}{when}", f"by {who}"))
        elif event.to_state == Enrollment.State.NOTIFIED and not has_notice_sms:
            entries.append(TimelineEntry(event.at, "notice", "Notice SMS accepted by the gateway", "", "ok"))
        elif event.to_state == Enrollment.State.CODES_ISSUED:
            entries.append(TimelineEntry(event.at, "codes", "Update codes 1 and 2 issued", f"by {who}", "ok"))
        elif event.to_state == Enrollment.State.CONFIRMED:
            entries.append(
                TimelineEntry(event.at, "confirmed", "Confirmed on the new key", f"by {who}. {reason}".strip(), "ok")
            )
        elif event.to_state == Enrollment.State.FAILED:
            entries.append(TimelineEntry(event.at, "typed", "Marked failed", f"by {who}: {reason}", "bad"))
        elif event.to_state == Enrollment.State.NON_COMPLIANT:
            entries.append(TimelineEntry(event.at, "flag", "Flagged for a field visit", f"by {who}: {reason}", "warn"))
    return entries


def _vend_entry(vend: Vend) -> TimelineEntry:
    codes = " with update codes 1 and 2" if vend.key_change_set_id else ""
    return TimelineEntry(
        vend.created_at,
        "vend",
        f"Bought KES {vend.amount} at {vend.partner.name}: {vend.units} kWh{codes}",
        f"reference {vend.reference}",
    )


SMS_NAMES: dict[str, str] = {
    Purpose.NOTICE: "Notice SMS",
    Purpose.CODES: "Update codes SMS",
    Purpose.TOKEN: "Token SMS",
    Purpose.REMINDER: "Reminder SMS",
}
SMS_OUTCOMES: dict[str, tuple[str, str]] = {
    SmsStatus.DELIVERED: ("delivered", "ok"),
    SmsStatus.FAILED: ("failed", "bad"),
    SmsStatus.REJECTED: ("refused by the network", "bad"),
    SmsStatus.SENT: ("sent, not yet reported delivered", ""),
    SmsStatus.HELD: ("held (batch paused)", ""),
    SmsStatus.CANCELLED: ("cancelled with its batch", "warn"),
}


def _message_entry(message: MessageRecord) -> TimelineEntry:
    # The timeline gives the time in its own column: the title says only what became of the SMS.
    outcome, tone = SMS_OUTCOMES.get(message.status, ("queued", ""))
    if message.failure_reason and message.status in FAILING_STATUSES:
        outcome += f" ({message.failure_reason})"
    at = message.delivered_at or message.sent_at or message.created_at
    detail = f"to {message.recipient}"
    if message.attempts > 1:
        detail += f", {message.attempts} attempts"
    name = SMS_NAMES.get(message.purpose, f"{message.get_purpose_display()} SMS")
    return TimelineEntry(at, "sms", f"{name} {outcome}", detail, tone)


def _token_entry(token: IssuedToken) -> TimelineEntry:
    return TimelineEntry(
        token.issued_at,
        "token",
        f"Management token issued (subclass {token.subclass}, key revision {token.krn})",
        f"by {actor_display(token.issued_by)}",
    )


def _case_entries(case: CareCase) -> list[TimelineEntry]:
    opened = TimelineEntry(
        case.opened_at,
        "case",
        f"Case {case.reference} opened: {case.get_kind_display()}",
        f"by {actor_display(case.opened_by)}" + (f": {case.summary}" if case.summary else ""),
        "warn",
    )
    if case.closed_at is None:
        return [opened]
    closed = TimelineEntry(
        case.closed_at,
        "case",
        f"Case {case.reference} closed",
        f"by {actor_display(case.closed_by)}: {case.resolution}",
    )
    return [opened, closed]


def _audit_entry(action: str, at: dt.datetime, label: str, details: dict[str, object]) -> TimelineEntry | None:
    who = f"by {actor_display(label)}"
    if action == "token.decoded":
        verdict = str(details.get("verdict", ""))
        words = VERDICT_WORDS.get(verdict, verdict or "a token")
        tone = "ok" if verdict in ("valid", "key_change_code") else "warn"
        return TimelineEntry(at, "typed", f"The customer typed {words}", f"decoded {who}", tone)
    if action in AUDIT_LINES:
        return TimelineEntry(at, "care", AUDIT_LINES[action], who)
    return None
