"""The endgame with real key change sets: codes sent without a purchase, and evidence of update
inferred from a later purchase under the new key (after the grace period, undone by a complaint)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from campaigns.models import Batch, Campaign, Enrollment
from campaigns.selectors import (
    batch_counters_recount,
    campaign_counters_live,
    campaign_counters_recount,
    left_counts,
)
from campaigns.services import batch_schedule, campaign_create, meter_mark_confirmed, notices_sent, updates_infer
from campaigns.texts import codes_only_render
from care.models import CareCase
from care.services import care_case_open
from kplc_sts import clock
from meters.models import Meter
from sms.models import Message
from sms.services import delivery_report_receive, messages_send
from tests.vending.factories import SGC, virtual_meter
from tokens.models import KeyChangeSet
from tokens.services import codes_push, codes_push_preview
from tokens.sts import format_token

pytestmark = pytest.mark.django_db

GROUPED = re.compile(r"\d{4}-\d{4}-\d{4}-\d{4}-\d{4}")


@pytest.fixture
def campaign(db) -> Campaign:
    return campaign_create(
        name="Endgame",
        sgcs=[SGC],
        from_krn=1,
        to_krn=2,
        deadline=dt.date(2024, 8, 31),
        daily_capacity=10_000,
        actor_label="test",
    )


def _notified_batch(campaign: Campaign, meters: list[Meter]) -> Batch:
    """A batch of these meters, scheduled now and its notices sent, through the services."""
    batch = batch_schedule(
        campaign=campaign, regions=[], sgcs=[], limit=len(meters), scheduled_at=clock.now(), actor_label="test"
    )
    notices_sent(batch_id=batch.pk, meter_ids=[meter.pk for meter in meters])
    return batch


def _counters_exact(campaign: Campaign) -> None:
    assert campaign_counters_live(campaign=campaign) == campaign_counters_recount(campaign=campaign)
    for batch in campaign.batches.all():
        live = {name: getattr(batch, name) for name in batch_counters_recount(batch_id=batch.pk)}
        assert live == batch_counters_recount(batch_id=batch.pk)


def _sent_and_reported(message: Message, report: str) -> None:
    """The outbox sends the message (the test backend accepts it) and its delivery report arrives."""
    messages_send(ids=[message.pk], queue="sms_notices")
    message.refresh_from_db()
    assert message.provider_message_id
    delivery_report_receive(provider_message_id=message.provider_message_id, status=report)


def _tokens(response) -> list[str]:
    return [t["digits"] for t in response.json()["tokens"]]


# --- Codes push -------------------------------------------------------------------------------------


def test_a_push_sends_the_same_codes_a_later_vend_returns_and_a_second_push_sends_nothing(
    campaign, vend, vending_keys, in_campaign, meter_factory, staff
):
    meters = [meter_factory() for _ in range(3)]
    batch = _notified_batch(campaign, meters)
    bought = vend(meters[0], reference="till-1")  # this one got its codes at the till already
    assert bought.status_code == 201 and len(_tokens(bought)) == 3

    preview = codes_push_preview(campaign=campaign, batch=batch)
    assert preview.count == 2 and str(preview.cost) == "1.60"  # 2 SMS at KES 0.80
    manager = staff("Campaign manager")
    assert codes_push(campaign=campaign, batch=batch, actor=manager) == 2

    pushed = {m.meter_id: m for m in Message.objects.filter(purpose=Message.Purpose.CODES, vend_id__isnull=True)}
    assert set(pushed) == {meters[1].pk, meters[2].pk}
    for meter in meters[1:]:
        key_change_set = KeyChangeSet.objects.get(meter=meter, campaign=campaign)
        body = pushed[meter.pk].body
        assert body == codes_only_render(meter_number=meter.meter_number, codes=list(key_change_set.codes))
        assert GROUPED.findall(body) == [format_token(code) for code in key_change_set.codes]
        # Queued is not issued: the codes count once the SMS is reported delivered.
        enrollment = Enrollment.objects.get(meter=meter)
        assert enrollment.state == Enrollment.State.NOTIFIED and enrollment.codes_pushed_at is not None
        assert Meter.objects.get(pk=meter.pk).key_state == Meter.KeyState.OLD_KEY
    _sent_and_reported(pushed[meters[2].pk], "Success")
    delivered = Enrollment.objects.get(meter=meters[2])
    assert delivered.state == Enrollment.State.CODES_ISSUED and delivered.codes_issued_at is not None
    assert Meter.objects.get(pk=meters[2].pk).key_state == Meter.KeyState.CODES_ISSUED

    # A second push of the same batch sends nothing new, and its preview says so first.
    assert codes_push_preview(campaign=campaign, batch=batch).count == 0
    assert codes_push(campaign=campaign, batch=batch, actor=manager) == 0
    assert Message.objects.filter(purpose=Message.Purpose.CODES, vend_id__isnull=True).count() == 2

    # The customer buys later: the vend carries exactly the codes the push sent, and the meter
    # takes the pushed codes and then the vend's token.
    later = vend(meters[1], reference="after-push")
    assert later.status_code == 201
    code1, code2, credit = _tokens(later)
    assert [format_token(code1), format_token(code2)] == GROUPED.findall(pushed[meters[1].pk].body)
    physical = virtual_meter(meters[1])
    typed = GROUPED.findall(pushed[meters[1].pk].body)
    assert physical.enter(typed[0]).accepted
    assert physical.enter(typed[1]).key_changed
    assert physical.enter(credit).accepted

    audits = AuditEvent.objects.filter(action="campaign.codes_pushed").order_by("id")
    assert [(a.details["sent"], a.actor_id) for a in audits] == [(2, manager.pk), (0, manager.pk)]
    assert audits[0].details["cost_kes"] == "1.60"
    _counters_exact(campaign)


def test_a_pushed_codes_sms_that_never_arrives_leaves_the_meter_without_codes(
    campaign, vend, vending_keys, in_campaign, meter_factory, staff
):
    meters = [meter_factory() for _ in range(2)]
    batch = _notified_batch(campaign, meters)
    assert codes_push(campaign=campaign, batch=batch, actor=staff("Campaign manager")) == 2
    pushed = {m.meter_id: m for m in Message.objects.filter(purpose=Message.Purpose.CODES, vend_id__isnull=True)}
    _sent_and_reported(pushed[meters[0].pk], "Failed")
    _sent_and_reported(pushed[meters[1].pk], "Success")
    _sent_and_reported(pushed[meters[1].pk], "Success")  # the gateway repeats itself: counted once

    states = {e.meter_id: e.state for e in Enrollment.objects.filter(campaign=campaign)}
    assert states == {meters[0].pk: Enrollment.State.NOTIFIED, meters[1].pk: Enrollment.State.CODES_ISSUED}
    campaign.refresh_from_db()
    assert campaign.codes_issued == 1
    _counters_exact(campaign)
    # The customer whose SMS was lost still gets the codes at the next purchase.
    bought = vend(meters[0], reference="after-failed-push")
    assert bought.status_code == 201 and len(_tokens(bought)) == 3
    assert Enrollment.objects.get(meter=meters[0]).state == Enrollment.State.CODES_ISSUED


def test_a_push_by_notified_days_takes_only_those_notified_long_enough(
    campaign, vending_keys, in_campaign, meter_factory
):
    old = [meter_factory() for _ in range(2)]
    _notified_batch(campaign, old)
    in_campaign.shift(dt.timedelta(days=4))
    recent = [meter_factory() for _ in range(2)]
    _notified_batch(campaign, recent)
    assert codes_push_preview(campaign=campaign, notified_days=3).count == 2

    out = StringIO()
    call_command("push_codes", "--campaign", str(campaign.pk), "--notified-days", "3", "--dry-run", stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "codes to push: 2"
    assert not KeyChangeSet.objects.exists()
    out = StringIO()
    call_command("push_codes", "--campaign", str(campaign.pk), "--notified-days", "3", stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "codes pushed: 2"
    assert set(KeyChangeSet.objects.values_list("meter_id", flat=True)) == {m.pk for m in old}
    out = StringIO()
    call_command("push_codes", "--campaign", str(campaign.pk), "--notified-days", "3", stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == "codes pushed: 0"
    _counters_exact(campaign)


# --- Evidence of update -----------------------------------------------------------------------------


def _codes_then_purchase(campaign, vend, meter_factory, in_campaign) -> Meter:
    meter = meter_factory()
    _notified_batch(campaign, [meter])
    assert vend(meter).status_code == 201  # the codes, with a token
    in_campaign.shift(dt.timedelta(days=1))
    assert vend(meter).status_code == 201  # a later purchase under the new key
    return meter


def _overview_kpis(client, staff, campaign) -> dict[str, int]:
    client.force_login(staff("Campaign manager", username=f"manager-{uuid.uuid4().hex[:8]}"))
    page = client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    found = re.findall(
        r'data-kpi="(\w+)">\s*<div class="label">([^<]+)</div>\s*<div class="value" data-value="(\d+)"', page
    )
    return {f"{key}:{label}": int(value) for key, label, value in found if key in ("confirmed", "inferred")}


def test_inferred_only_after_the_grace_period_and_shown_apart_from_confirmed(
    campaign, vend, vending_keys, in_campaign, meter_factory, settings, client, staff
):
    settings.ENDGAME_INFERENCE_GRACE_DAYS = 3
    meter = _codes_then_purchase(campaign, vend, meter_factory, in_campaign)
    enrollment = Enrollment.objects.get(meter=meter)
    assert enrollment.new_key_purchase_at is not None and enrollment.inferred_at is None

    assert updates_infer() == 0
    in_campaign.shift(dt.timedelta(days=2, hours=23))
    assert updates_infer() == 0  # still inside the grace period
    in_campaign.shift(dt.timedelta(hours=2))
    assert updates_infer() == 1
    assert updates_infer() == 0  # once
    campaign.refresh_from_db()
    assert (campaign.inferred, campaign.confirmed) == (1, 0)
    assert left_counts(campaign=campaign) == {}  # not "codes issued, not typed" any more
    _counters_exact(campaign)
    kpis = {"confirmed:Confirmed by customer": 0, "inferred:Inferred from purchase": 1}
    assert _overview_kpis(client, staff, campaign) == kpis

    # The customer confirms later: the meter moves from "inferred" to "confirmed by customer".
    meter_mark_confirmed(meter=meter, origin=Enrollment.Origin.USSD, actor_label="ussd:+254700000009")
    campaign.refresh_from_db()
    assert (campaign.inferred, campaign.confirmed) == (0, 1)
    _counters_exact(campaign)
    kpis = {"confirmed:Confirmed by customer": 1, "inferred:Inferred from purchase": 0}
    assert _overview_kpis(client, staff, campaign) == kpis


def test_a_later_complaint_takes_the_inference_back(campaign, vend, vending_keys, in_campaign, meter_factory):
    meter = _codes_then_purchase(campaign, vend, meter_factory, in_campaign)
    in_campaign.shift(dt.timedelta(days=4))
    assert updates_infer() == 1
    care_case_open(meter=meter, kind=CareCase.Kind.TOKEN_REJECTED, source=CareCase.Source.AGENT, actor_label="t")
    enrollment = Enrollment.objects.get(meter=meter)
    assert enrollment.inferred_at is None and enrollment.new_key_purchase_at is None
    campaign.refresh_from_db()
    assert campaign.inferred == 0
    assert left_counts(campaign=campaign) == {("Nairobi", "not_typed"): 1}
    _counters_exact(campaign)
    # No new purchase since the complaint: nothing to infer from however long it waits.
    in_campaign.shift(dt.timedelta(days=10))
    assert updates_infer() == 0
    # A purchase after the complaint starts a new grace period.
    assert vend(meter).status_code == 201
    in_campaign.shift(dt.timedelta(days=4))
    assert updates_infer() == 1
    _counters_exact(campaign)


def test_a_complaint_inside_the_grace_period_means_no_inference(
    campaign, vend, vending_keys, in_campaign, meter_factory
):
    meter = _codes_then_purchase(campaign, vend, meter_factory, in_campaign)
    in_campaign.shift(dt.timedelta(days=1))
    care_case_open(meter=meter, kind=CareCase.Kind.NO_CODES, source=CareCase.Source.AGENT, actor_label="t")
    in_campaign.shift(dt.timedelta(days=5))
    assert updates_infer() == 0
    assert Enrollment.objects.get(meter=meter).inferred_at is None


def test_a_rejected_code_report_after_the_inference_undoes_it(campaign, vend, vending_keys, in_campaign, meter_factory):
    from campaigns.services import meter_mark_codes_rejected

    meter = _codes_then_purchase(campaign, vend, meter_factory, in_campaign)
    in_campaign.shift(dt.timedelta(days=4))
    assert updates_infer() == 1
    assert meter_mark_codes_rejected(meter=meter, actor_label="ussd:+254700000010", reason="code 2")
    enrollment = Enrollment.objects.get(meter=meter)
    assert enrollment.state == Enrollment.State.FAILED and enrollment.inferred_at is None
    campaign.refresh_from_db()
    assert (campaign.inferred, campaign.failed) == (0, 1)
    assert left_counts(campaign=campaign) == {("Nairobi", "rejected"): 1}
    _counters_exact(campaign)


def test_the_first_purchase_that_brings_the_codes_is_no_evidence(
    campaign, vend, vending_keys, in_campaign, meter_factory
):
    meter = meter_factory()
    _notified_batch(campaign, [meter])
    assert vend(meter).status_code == 201
    in_campaign.shift(dt.timedelta(days=10))
    assert updates_infer() == 0
    assert Enrollment.objects.get(meter=meter).new_key_purchase_at is None
