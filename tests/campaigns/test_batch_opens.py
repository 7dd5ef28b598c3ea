"""A batch moves on from "Sending notices" the moment its last notice is out, not at the next sweep.

Each test sends the notices itself (messages_send, as a worker does) and never runs the sweep or
campaigns' periodic task, so only the event path can have opened the batch.
"""

from __future__ import annotations

import pytest

from campaigns.models import Batch
from campaigns.services import batch_notices_create, batch_schedule
from sms.backends.base import SendResult
from sms.backends.memory import MemoryBackend
from sms.models import Message
from sms.services import messages_send

pytestmark = pytest.mark.django_db

Status = Batch.Status


@pytest.fixture
def notifying(campaign, meter_factory, now) -> tuple[Batch, list[int]]:
    meter_factory.create_batch(3)
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=now)
    assert batch_notices_create(batch=batch, now=now) == 3
    batch.refresh_from_db()
    assert batch.status == Status.NOTIFYING
    return batch, list(Message.objects.filter(batch_id=batch.pk).order_by("pk").values_list("pk", flat=True))


def status(batch: Batch) -> str:
    batch.refresh_from_db()
    return batch.status


def test_the_batch_opens_when_its_last_notice_is_sent(notifying):
    batch, ids = notifying
    messages_send(ids=ids[:2], queue="sms_notices")
    assert status(batch) == Status.NOTIFYING  # one notice still queued
    messages_send(ids=ids[2:], queue="sms_notices")
    assert status(batch) == Status.OPEN


def test_the_batch_opens_when_its_last_notice_is_refused_for_good(notifying, settings):
    batch, ids = notifying
    messages_send(ids=ids[:2], queue="sms_notices")
    MemoryBackend.script = [SendResult.rejected("UserInBlacklist")]
    messages_send(ids=ids[2:], queue="sms_notices")
    assert Message.objects.get(pk=ids[2]).status == Message.Status.REJECTED
    assert status(batch) == Status.OPEN


def test_a_notice_waiting_for_a_retry_keeps_the_batch_sending_until_it_ends(notifying, settings):
    batch, ids = notifying
    settings.SMS_MAX_ATTEMPTS = 2
    messages_send(ids=ids[:2], queue="sms_notices")
    MemoryBackend.script = [SendResult.retry("HTTP 500", "InternalServerError")]
    messages_send(ids=ids[2:], queue="sms_notices")
    assert Message.objects.get(pk=ids[2]).status == Message.Status.QUEUED
    assert status(batch) == Status.NOTIFYING  # the retry may still reach the customer

    # The second attempt fails too: that was the last one, so the batch has nothing left to send.
    Message.objects.filter(pk=ids[2]).update(next_attempt_at=None)
    MemoryBackend.script = [SendResult.retry("HTTP 500", "InternalServerError")]
    messages_send(ids=ids[2:], queue="sms_notices")
    assert Message.objects.get(pk=ids[2]).status == Message.Status.FAILED
    assert status(batch) == Status.OPEN
