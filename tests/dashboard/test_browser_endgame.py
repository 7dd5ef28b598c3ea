"""The endgame pages in a real headless Chromium: who is left, the codes push with its count and
cost before confirming, and the reminder rule form."""

from __future__ import annotations

import re

import pytest

from audit.models import AuditEvent
from campaigns.models import Enrollment, ReminderRule
from campaigns.services import batch_schedule, notices_sent
from dashboard.services import left_cache_clear
from kplc_sts import clock
from sms.models import Message
from sms.services import delivery_report_receive, messages_send
from tests.browser import chromium_page
from tests.conftest import STAFF_PASSWORD
from tests.vending.factories import load_vending_keys
from tokens.models import KeyChangeSet

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(transactional_db, live_server, monkeypatch):
    yield from chromium_page(monkeypatch)


def _login(page, live_server, user):
    page.goto(f"{live_server.url}/dashboard/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/"))


def _notified(campaign, meters):
    batch = batch_schedule(
        campaign=campaign, regions=[], sgcs=[], limit=len(meters), scheduled_at=clock.now(), actor_label="t"
    )
    notices_sent(batch_id=batch.pk, meter_ids=[m.pk for m in meters])
    return batch


def test_manager_finds_who_is_left_and_pushes_the_codes_after_seeing_count_and_cost(
    page, live_server, manager, campaign, meter_factory
):
    load_vending_keys()
    meters = meter_factory.create_batch(3, region="Nairobi", sgc="600675")
    _notified(campaign, meters)
    _login(page, live_server, manager)

    page.click("nav >> text=Who is left")
    page.wait_for_selector("#reason-table")
    row = page.locator("#reason-table tr[data-reason='no_purchase']")
    assert row.locator("[data-col=count]").inner_text() == "3"
    assert page.locator("#left-table tr[data-region='Nairobi'] [data-col=no_purchase]").inner_text() == "3"

    row.locator("[data-action=push]").click()
    page.wait_for_selector("#push-confirm")
    assert page.inner_text("#push-preview-box [data-field=count]") == "3"
    assert page.inner_text("#push-preview-box [data-field=cost]") == "KES 2.40"
    assert not KeyChangeSet.objects.exists()  # nothing sent before the confirmation

    page.click("#push-confirm")
    page.wait_for_url(re.compile(r"/left/$"))
    assert "Update codes sent by SMS to 3 meters (KES 2.40)" in page.inner_text(".messages")
    assert page.locator("#reason-table tr[data-reason='no_purchase'] [data-col=count]").inner_text() == "0"
    # Sent, not yet delivered: the codes count as issued only when the SMS arrives.
    assert page.locator("#reason-table tr[data-reason='pushed'] [data-col=count]").inner_text() == "3"
    pushed = list(Message.objects.filter(purpose=Message.Purpose.CODES, meter__in=meters))
    assert len(pushed) == 3
    assert set(Enrollment.objects.values_list("state", flat=True)) == {Enrollment.State.NOTIFIED}
    assert AuditEvent.objects.get(action="campaign.codes_pushed").details["sent"] == 3

    messages_send(ids=[message.pk for message in pushed], queue="sms_notices")
    for message in Message.objects.filter(pk__in=[message.pk for message in pushed]):
        delivery_report_receive(provider_message_id=message.provider_message_id, status="Success")
    left_cache_clear(campaign=campaign)  # as LEFT_CACHE_SECONDS passing would
    page.reload()
    assert page.locator("#reason-table tr[data-reason='pushed'] [data-col=count]").inner_text() == "0"
    assert page.locator("#reason-table tr[data-reason='not_typed'] [data-col=count]").inner_text() == "3"
    assert set(Enrollment.objects.values_list("state", flat=True)) == {Enrollment.State.CODES_ISSUED}

    # The same selection again: the count says there is nothing left to send.
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/push/?notified_days=0")
    page.wait_for_selector("#push-nothing")
    assert page.inner_text("#push-preview-box [data-field=count]") == "0"


def test_manager_sets_the_reminder_rule_and_a_bad_template_is_refused(
    page, live_server, manager, campaign, meter_factory
):
    meters = meter_factory.create_batch(2, region="Mombasa")
    _notified(campaign, meters)
    _login(page, live_server, manager)
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/left/")
    page.click("#reminder-rule-link")
    page.wait_for_selector("#reminder-form")
    assert page.inner_text("#reminder-preview [data-field=enabled]") == "off"

    page.check("#id_enabled")
    page.fill("#id_notified_days", "2")
    page.fill("#id_template", "KPLC {meter}: please update before {deadline}.")  # no *977# hint
    page.click("#reminder-save")
    page.wait_for_selector("#template-errors .errorlist")
    assert "*977#" in page.inner_text("#template-errors")
    assert not ReminderRule.objects.exists()

    page.fill("#id_template", "KPLC {meter} {name}: update before {deadline}. Codes lost? Dial *977#")
    page.click("#reminder-save")
    page.wait_for_selector(".messages")
    assert "reminders are on" in page.inner_text(".messages")
    rule = ReminderRule.objects.get(campaign=campaign)
    assert (rule.enabled, rule.notified_days, rule.codes_days, rule.max_per_meter) == (True, 2, 5, 2)
    assert page.inner_text("#reminder-preview [data-field=enabled]") == "on"
    assert "Dial *977#" in page.inner_text("#reminder-sample")
    # Notified just now: nobody is due yet (two days to wait).
    assert page.inner_text("#reminder-preview [data-field=due]").startswith("0 meters")
    assert AuditEvent.objects.filter(action="campaign.reminder_rule_saved").count() == 1
