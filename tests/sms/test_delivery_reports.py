from __future__ import annotations

import json

import pytest

from campaigns.models import Batch
from campaigns.services import batch_schedule, batches_start_due
from sms.models import DeliveryReport, Message
from tests.factories import campaign_sms_tally, sms_tally

pytestmark = pytest.mark.django_db
URL = "/sms/delivery-reports/{}/"


@pytest.fixture
def sent_notice(meter_factory, now_campaign):
    meter_factory.create()
    batch = batch_schedule(campaign=now_campaign, regions=[], sgcs=[], limit=1, scheduled_at=now_campaign.created_at)
    batches_start_due()
    message = Message.objects.get(batch_id=batch.pk)
    assert message.status == "sent"
    return message


@pytest.fixture
def now_campaign(db):
    import datetime as dt

    from campaigns.services import campaign_create

    return campaign_create(
        name="C", sgcs=["600675"], from_krn=1, to_krn=2, deadline=dt.date(2030, 1, 1), daily_capacity=100
    )


def test_form_report_settles_the_message_once(client, settings, sent_notice):
    url = URL.format(settings.SMS_DELIVERY_REPORT_SECRET)
    form = {
        "id": sent_notice.provider_message_id,
        "status": "Success",
        "phoneNumber": sent_notice.recipient,
        "networkCode": "63902",
        "retryCount": "0",
    }
    assert client.post(url, form).status_code == 200
    assert client.post(url, form).status_code == 200  # AT may post twice
    sent_notice.refresh_from_db()
    assert sent_notice.status == "delivered" and sent_notice.delivered_at is not None
    batch = Batch.objects.get(pk=sent_notice.batch_id)
    assert sms_tally(batch) == (1, 1, 0)
    assert campaign_sms_tally(batch.campaign)[1] == 1
    assert DeliveryReport.objects.count() == 1


def test_json_report_with_a_failure_reason(client, settings, sent_notice):
    url = URL.format(settings.SMS_DELIVERY_REPORT_SECRET)
    body = {"id": sent_notice.provider_message_id, "status": "Rejected", "failureReason": "UserInBlacklist"}
    assert client.post(url, json.dumps(body), content_type="application/json").status_code == 200
    sent_notice.refresh_from_db()
    assert (sent_notice.status, sent_notice.failure_reason) == ("rejected", "UserInBlacklist")
    assert sms_tally(Batch.objects.get(pk=sent_notice.batch_id))[2] == 1


def test_wrong_secret_and_bad_bodies(client, settings, sent_notice):
    assert client.post(URL.format("guess"), {"id": "x", "status": "Success"}).status_code == 404
    url = URL.format(settings.SMS_DELIVERY_REPORT_SECRET)
    assert client.post(url, {"status": "Success"}).status_code == 400
    assert client.post(url, "[1]", content_type="application/json").status_code == 400
    sent_notice.refresh_from_db()
    assert sent_notice.status == "sent"


def test_a_report_that_beats_the_worker_is_applied_later(client, settings):
    url = URL.format(settings.SMS_DELIVERY_REPORT_SECRET)
    client.post(url, {"id": "ATXid_early", "status": "Buffered"})
    client.post(url, {"id": "ATXid_early", "status": "Success"})
    message = Message.objects.create(
        recipient="+254712345678", body="x", purpose="codes", status="sent", provider_message_id="ATXid_early"
    )
    from sms.services import messages_sweep

    assert messages_sweep()["reports"] == 1
    message.refresh_from_db()
    assert message.status == "delivered"


def test_an_intermediate_report_then_the_final_one(client, settings, sent_notice):
    url = URL.format(settings.SMS_DELIVERY_REPORT_SECRET)
    client.post(url, {"id": sent_notice.provider_message_id, "status": "Buffered", "phoneNumber": "+254712345678"})
    sent_notice.refresh_from_db()
    assert sent_notice.status == "sent"
    client.post(url, {"id": sent_notice.provider_message_id, "status": "Failed", "failureReason": "AbsentSubscriber"})
    client.post(url, {"id": sent_notice.provider_message_id, "status": "Sent"})  # late, out of order: ignored
    sent_notice.refresh_from_db()
    assert (sent_notice.status, sent_notice.failure_reason) == ("failed", "AbsentSubscriber")
    report = DeliveryReport.objects.get()
    assert (report.status, report.applied_at is not None) == ("Failed", True)
    batch = Batch.objects.get(pk=sent_notice.batch_id)
    assert sms_tally(batch)[1:] == (0, 1) and campaign_sms_tally(batch.campaign)[2] == 1
