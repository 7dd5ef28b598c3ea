"""Reminders: who is due, how many, never to the updated, never in quiet hours (Africa/Nairobi)."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from campaigns.models import Batch, Campaign, Enrollment, ReminderRule
from campaigns.selectors import campaign_counters_live, reminders_due
from campaigns.services import reminder_rule_save, reminders_send
from campaigns.texts import TemplateError, reminder_render
from meters.models import Meter
from sms.backends.memory import MemoryBackend
from sms.models import Message
from sms.services import messages_send

pytestmark = pytest.mark.django_db

NAIROBI = ZoneInfo("Africa/Nairobi")
MORNING = dt.datetime(2024, 8, 10, 10, 0, tzinfo=NAIROBI)
NIGHT = dt.datetime(2024, 8, 10, 21, 30, tzinfo=NAIROBI)
TEMPLATE = "KPLC {meter} {name}: update before {deadline}. Type update codes 1 and 2 first. No codes? *977#"
State = Enrollment.State


@pytest.fixture
def batch(campaign: Campaign) -> Batch:
    return Batch.objects.create(
        campaign=campaign,
        number=1,
        selection_limit=100,
        scheduled_at=MORNING - dt.timedelta(days=20),
        started_at=MORNING - dt.timedelta(days=20),
        status=Batch.Status.OPEN,
    )


@pytest.fixture
def rule(campaign: Campaign) -> ReminderRule:
    return reminder_rule_save(
        campaign=campaign,
        enabled=True,
        notified_days=3,
        codes_days=5,
        max_per_meter=2,
        template=TEMPLATE,
        actor_label="test",
    )


def _enrolled(batch: Batch, meter: Meter, *, state: str, **times: dt.datetime | None) -> Enrollment:
    """An enrollment as the services would have left it (test data: timestamps set directly)."""
    return Enrollment.objects.create(
        campaign=batch.campaign,
        meter=meter,
        batch=batch,
        state=state,
        enrolled_at=MORNING - dt.timedelta(days=20),
        state_changed_at=MORNING - dt.timedelta(days=20),
        **times,
    )


def _days_ago(days: float) -> dt.datetime:
    return MORNING - dt.timedelta(days=days)


def test_due_are_the_notified_without_purchase_and_the_codes_without_sign_of_update(batch, rule, meter_factory):
    notified_long = _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(4))
    _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(2))  # too recent
    codes_long = _enrolled(
        batch,
        meter_factory(key_state=Meter.KeyState.CODES_ISSUED),
        state=State.CODES_ISSUED,
        notified_at=_days_ago(9),
        codes_issued_at=_days_ago(6),
    )
    _enrolled(  # codes too recent
        batch,
        meter_factory(key_state=Meter.KeyState.CODES_ISSUED),
        state=State.CODES_ISSUED,
        notified_at=_days_ago(9),
        codes_issued_at=_days_ago(4),
    )
    _enrolled(  # bought again under the new key since: a sign of update
        batch,
        meter_factory(key_state=Meter.KeyState.CODES_ISSUED),
        state=State.CODES_ISSUED,
        codes_issued_at=_days_ago(8),
        new_key_purchase_at=_days_ago(2),
    )
    _enrolled(  # inferred updated
        batch,
        meter_factory(key_state=Meter.KeyState.CODES_ISSUED),
        state=State.CODES_ISSUED,
        codes_issued_at=_days_ago(12),
        new_key_purchase_at=_days_ago(10),
        inferred_at=_days_ago(6),
    )
    _enrolled(  # confirmed by the customer
        batch,
        meter_factory(key_state=Meter.KeyState.CONFIRMED),
        state=State.CONFIRMED,
        codes_issued_at=_days_ago(12),
        confirmed_at=_days_ago(11),
    )
    _enrolled(  # waiting for a field visit
        batch,
        meter_factory(key_state=Meter.KeyState.NON_COMPLIANT, status=Meter.Status.NON_COMPLIANT),
        state=State.NON_COMPLIANT,
        notified_at=_days_ago(9),
        non_compliant_at=_days_ago(8),
    )
    _enrolled(batch, meter_factory(phone=""), state=State.NOTIFIED, notified_at=_days_ago(6))  # no phone

    due = reminders_due(campaign=batch.campaign, rule=rule, now=MORNING)
    assert set(due.values_list("pk", flat=True)) == {notified_long.pk, codes_long.pk}

    with time_machine.travel(MORNING, tick=False):
        assert reminders_send(campaign=batch.campaign) == 2
    messages = Message.objects.filter(purpose=Message.Purpose.REMINDER).order_by("meter_id")
    assert [m.meter_id for m in messages] == sorted([notified_long.meter_id, codes_long.meter_id])
    first = messages[0]
    meter = Meter.objects.get(pk=first.meter_id)
    assert first.body == reminder_render(
        template=TEMPLATE, meter_number=meter.meter_number, name=meter.customer_name, deadline=batch.campaign.deadline
    )
    assert "*977#" in first.body and first.batch_id == batch.pk and first.status == Message.Status.QUEUED
    notified_long.refresh_from_db()
    assert (notified_long.reminders_sent, notified_long.last_reminder_at) == (1, MORNING)


def test_at_most_k_per_meter_each_waiting_as_long_again(batch, rule, meter_factory):
    enrollment = _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(4))
    campaign = batch.campaign
    with time_machine.travel(MORNING, tick=False):
        assert reminders_send(campaign=campaign) == 1
        assert reminders_send(campaign=campaign) == 0  # a second run at once sends nothing
    with time_machine.travel(MORNING + dt.timedelta(days=2), tick=False):
        assert reminders_send(campaign=campaign) == 0  # less than notified_days since the last one
    with time_machine.travel(MORNING + dt.timedelta(days=3), tick=False):
        assert reminders_send(campaign=campaign) == 1
    with time_machine.travel(MORNING + dt.timedelta(days=30), tick=False):
        assert reminders_send(campaign=campaign) == 0  # max_per_meter = 2 reached
    enrollment.refresh_from_db()
    assert enrollment.reminders_sent == 2
    assert Message.objects.filter(purpose=Message.Purpose.REMINDER, meter_id=enrollment.meter_id).count() == 2


def test_never_after_the_meter_is_updated(batch, rule, meter_factory):
    from campaigns.services import meter_mark_confirmed

    enrollment = _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(4))
    with time_machine.travel(MORNING, tick=False):
        meter_mark_confirmed(meter=enrollment.meter, origin=Enrollment.Origin.USSD, actor_label="ussd:+254700000001")
        assert reminders_send(campaign=batch.campaign) == 0
    assert not Message.objects.filter(purpose=Message.Purpose.REMINDER).exists()


def test_a_rule_that_is_off_sends_nothing(batch, campaign, meter_factory):
    _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(4))
    with time_machine.travel(MORNING, tick=False):
        assert reminders_send(campaign=campaign) == 0  # no rule saved: the default is off
        reminder_rule_save(
            campaign=campaign,
            enabled=False,
            notified_days=1,
            codes_days=1,
            max_per_meter=1,
            template=TEMPLATE,
            actor_label="test",
        )
        assert reminders_send(campaign=campaign) == 0
    assert not Message.objects.exists()


def test_quiet_hours_hold_reminders_until_the_morning(batch, rule, meter_factory):
    enrollment = _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(4))
    with time_machine.travel(NIGHT, tick=False):
        assert reminders_send(campaign=batch.campaign) == 0
        assert reminders_send(campaign=batch.campaign, dry_run=True) == 1  # still due
    assert not Message.objects.exists()
    enrollment.refresh_from_db()
    assert enrollment.reminders_sent == 0
    with time_machine.travel(NIGHT.replace(hour=7, minute=59) + dt.timedelta(days=1), tick=False):
        assert reminders_send(campaign=batch.campaign) == 0  # 07:59 is still night
    with time_machine.travel(NIGHT.replace(hour=8, minute=0) + dt.timedelta(days=1), tick=False):
        assert reminders_send(campaign=batch.campaign) == 1


def test_a_reminder_claimed_at_night_waits_for_the_morning(batch, rule, meter_factory):
    # Written in the evening; its send (a retry, a slow queue) comes after 20:00: not sent, held to 08:00.
    _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(4))
    with time_machine.travel(NIGHT.replace(hour=19, minute=59), tick=False):
        assert reminders_send(campaign=batch.campaign) == 1
    message = Message.objects.get(purpose=Message.Purpose.REMINDER)
    with time_machine.travel(NIGHT, tick=False):
        assert messages_send(ids=[message.pk], queue="sms_notices") == 0
    message.refresh_from_db()
    assert MemoryBackend.outbox == []
    assert message.status == Message.Status.QUEUED and message.attempts == 0
    assert message.next_attempt_at == dt.datetime(2024, 8, 11, 8, 0, tzinfo=NAIROBI)
    with time_machine.travel(dt.datetime(2024, 8, 11, 8, 1, tzinfo=NAIROBI), tick=False):
        assert messages_send(ids=[message.pk], queue="sms_notices") == 1
    assert [sms.recipient for sms in MemoryBackend.outbox] == [message.recipient]


def test_the_reminder_template_is_checked_like_the_others(campaign):
    bad = {
        "no *977# hint": "KPLC {meter}: update before {deadline}.",
        "no meter": "KPLC: update before {deadline}. *977#",
        "curly quote": "KPLC {meter}: don\u2019t wait. *977#",
        "a link": "KPLC {meter}: see http://kplc.example *977#",
        "unknown field": "KPLC {meter} {token} *977#",
        "too long": "KPLC {meter} {name} " + "x" * 140 + " *977#",
    }
    for why, template in bad.items():
        with pytest.raises(TemplateError):
            reminder_rule_save(
                campaign=campaign,
                enabled=True,
                notified_days=3,
                codes_days=5,
                max_per_meter=2,
                template=template,
                actor_label="test",
            )
        assert not ReminderRule.objects.exists(), why


def test_send_reminders_command_prints_its_count_last(batch, rule, meter_factory):
    for _ in range(3):
        _enrolled(batch, meter_factory(), state=State.NOTIFIED, notified_at=_days_ago(5))
    out = StringIO()
    before = campaign_counters_live(campaign=batch.campaign)
    with time_machine.travel(MORNING, tick=False):
        call_command("send_reminders", "--campaign", str(batch.campaign_id), "--dry-run", stdout=out)
        assert out.getvalue().strip().splitlines()[-1] == "reminders due: 3"
        assert not Message.objects.exists()
        out = StringIO()
        call_command("send_reminders", "--campaign", str(batch.campaign_id), stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "reminders sent: 3"
    assert Message.objects.filter(purpose=Message.Purpose.REMINDER).count() == 3
    # A reminder moves no enrollment along the funnel: no counter changes.
    assert campaign_counters_live(campaign=batch.campaign) == before
