"""The outbox: queueing after commit, claiming, retries, permanent failures, the sweep."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from sms.backends.base import SendResult
from sms.backends.memory import MemoryBackend
from sms.models import Message
from sms.services import message_queue, messages_claim, messages_send, messages_sweep

pytestmark = pytest.mark.django_db


def message_send(pk: int) -> str | None:
    """Send one message the way production does (messages_send over a claimed chunk); its status
    afterwards, or None when it was not claimed (another worker, not due, held)."""
    before = Message.objects.get(pk=pk).attempts
    messages_send(ids=[pk], queue="sms_codes")
    message = Message.objects.get(pk=pk)
    return message.status if message.attempts > before else None


def test_a_message_goes_out_only_after_commit(django_capture_on_commit_callbacks, meter_factory):
    meter = meter_factory.create()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = message_queue(recipient="0712 345 678", body="codes", purpose="codes", meter=meter, vend_id=7)
    assert MemoryBackend.outbox == [] and len(callbacks) == 1
    callbacks[0]()
    message.refresh_from_db()
    assert message.recipient == "+254712345678" and message.status == "sent" and message.attempts == 1
    assert [sms.recipient for sms in MemoryBackend.outbox] == ["+254712345678"]


def test_an_invalid_number_is_rejected_without_sending(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message = message_queue(recipient="12345", body="x", purpose="care")
    assert callbacks == [] and MemoryBackend.outbox == []
    assert (message.status, message.failure_reason) == ("rejected", "InvalidPhoneNumber")


def test_queueing_survives_a_broker_outage(django_capture_on_commit_callbacks, monkeypatch):
    from sms import tasks

    publishes = []

    def broker_down(*args, **kwargs):
        publishes.append(kwargs)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.send_messages_task, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        message = message_queue(recipient="+254712345678", body="x", purpose="codes")
    assert [kwargs["retry"] for kwargs in publishes] == [False]  # no publish retries inside a vend
    message.refresh_from_db()
    assert message.status == "queued"  # kept for the sweep
    monkeypatch.undo()
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - dt.timedelta(minutes=1))
    assert messages_sweep()["dispatched"] == 1
    message.refresh_from_db()
    assert message.status == "sent"


def _queued(**fields) -> Message:
    fields.setdefault("recipient", "+254712345678")
    return Message.objects.create(body="x", purpose="codes", **fields)


def test_only_one_claim_wins():
    message = _queued()
    assert len(messages_claim([message.pk])) == 1
    assert messages_claim([message.pk]) == []
    assert Message.objects.get(pk=message.pk).status == "sending"


def test_transient_failures_back_off_and_stop_at_the_cap(settings):
    settings.SMS_MAX_ATTEMPTS = 3
    message = _queued()
    MemoryBackend.script = [SendResult.retry("500 InternalServerError", "InternalServerError")] * 3
    assert message_send(message.pk) == "queued"
    message.refresh_from_db()
    assert message.attempts == 1 and message.next_attempt_at > timezone.now()
    assert message_send(message.pk) is None  # not due yet

    first_delay = message.next_attempt_at - timezone.now()
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert message_send(message.pk) == "queued"
    message.refresh_from_db()
    assert message.next_attempt_at - timezone.now() > first_delay  # exponential
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert message_send(message.pk) == "failed"
    message.refresh_from_db()
    assert (message.status, message.attempts, message.failure_reason) == ("failed", 3, "InternalServerError")
    assert MemoryBackend.outbox == []


def test_permanent_failures_are_never_retried():
    message = _queued()
    MemoryBackend.script = [SendResult.rejected("UserInBlacklist", "406 UserInBlacklist")]
    assert message_send(message.pk) == "rejected"
    Message.objects.filter(pk=message.pk).update(next_attempt_at=None)
    assert message_send(message.pk) is None
    message.refresh_from_db()
    assert (message.status, message.attempts, message.failure_reason) == ("rejected", 1, "UserInBlacklist")


def test_the_sweep_requeues_messages_stuck_in_sending(settings):
    settings.SMS_SENDING_STALE_SECONDS = 60
    stuck = _queued(status="sending", claimed_at=timezone.now() - dt.timedelta(minutes=5), attempts=1)
    busy = _queued(status="sending", claimed_at=timezone.now(), attempts=1)
    Message.objects.update(created_at=timezone.now() - dt.timedelta(minutes=6))
    result = messages_sweep()
    assert result["requeued"] == 1
    stuck.refresh_from_db()
    busy.refresh_from_db()
    assert stuck.status == "sent" and stuck.attempts == 2  # re-queued, then re-sent (eager)
    assert busy.status == "sending"


def _report(provider_id: str, phone: str, status: str = "Success", *, ago: float = 0.0) -> None:
    from sms.models import DeliveryReport

    report = DeliveryReport.objects.create(provider_message_id=provider_id, status=status, phone_number=phone)
    DeliveryReport.objects.filter(pk=report.pk).update(received_at=timezone.now() - dt.timedelta(seconds=ago))


def test_the_sweep_adopts_a_report_for_a_stuck_message_instead_of_sending_it_again(settings):
    settings.SMS_SENDING_STALE_SECONDS, settings.SMS_DLR_GRACE_SECONDS = 60, 600
    claimed = timezone.now() - dt.timedelta(minutes=5)
    stuck = _queued(status="sending", claimed_at=claimed, attempts=1)
    other = _queued(recipient="+254700000002", status="sending", claimed_at=claimed, attempts=1)
    _report("ATXid_lost", stuck.recipient, ago=200)  # after the claim: the gateway took it
    _report("ATXid_older", other.recipient, ago=400)  # before its claim: an earlier send, not this one
    result = messages_sweep()
    assert (result["adopted"], result["requeued"]) == (1, 0)
    stuck.refresh_from_db()
    assert (stuck.status, stuck.provider_message_id, stuck.attempts) == ("delivered", "ATXid_lost", 1)
    assert MemoryBackend.outbox == []  # nothing sent again
    other.refresh_from_db()
    assert other.status == "sending"  # no evidence yet, inside the grace period


def test_a_stuck_message_without_any_report_is_sent_again_after_the_grace_period(settings):
    settings.SMS_SENDING_STALE_SECONDS, settings.SMS_DLR_GRACE_SECONDS = 60, 600
    stuck = _queued(status="sending", claimed_at=timezone.now() - dt.timedelta(minutes=5), attempts=1)
    Message.objects.update(created_at=timezone.now() - dt.timedelta(minutes=20))
    assert messages_sweep()["requeued"] == 0
    Message.objects.filter(pk=stuck.pk).update(claimed_at=timezone.now() - dt.timedelta(minutes=11))
    assert messages_sweep()["requeued"] == 1
    stuck.refresh_from_db()
    assert (stuck.status, stuck.attempts) == ("sent", 2)
    assert [sms.recipient for sms in MemoryBackend.outbox] == [stuck.recipient]


def test_two_stuck_messages_to_one_number_take_one_report_each(settings):
    settings.SMS_SENDING_STALE_SECONDS, settings.SMS_DLR_GRACE_SECONDS = 60, 600
    claimed = timezone.now() - dt.timedelta(minutes=5)
    first = _queued(status="sending", claimed_at=claimed, attempts=1)
    second = _queued(status="sending", claimed_at=claimed, attempts=1)
    _report("ATXid_one", first.recipient, ago=100)
    assert messages_sweep()["adopted"] == 1
    _report("ATXid_two", first.recipient, status="Sent", ago=50)  # an intermediate report is evidence too
    assert messages_sweep()["adopted"] == 1
    statuses = dict(Message.objects.filter(pk__in=[first.pk, second.pk]).values_list("provider_message_id", "status"))
    assert statuses == {"ATXid_one": "delivered", "ATXid_two": "sent"}
