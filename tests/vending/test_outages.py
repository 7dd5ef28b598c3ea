"""A vend never waits for Redis or the SMS gateway: it succeeds, and the SMS follows when they return."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from kplc_sts.celery import app as celery_app
from sms import services as sms_services
from sms.backends.base import SendResult
from sms.backends.memory import MemoryBackend
from sms.models import Message
from tokens.models import Vend

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once


def _point_celery_at(broker_url: str, *, eager: bool) -> None:
    celery_app.conf.update(task_always_eager=eager, broker_url=broker_url)
    # Drop the cached pools so the next publish really connects to the URL now in force.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_down():
    saved = {key: celery_app.conf[key] for key in ("task_always_eager", "broker_url")}
    _point_celery_at(CLOSED_PORT_BROKER, eager=False)
    yield
    _point_celery_at(saved["broker_url"], eager=saved["task_always_eager"])


def _sweep_later() -> dict[str, int]:
    # The sweep only re-publishes messages older than a couple of seconds (fresh ones have a task).
    return sms_services.messages_sweep(now=timezone.now() + dt.timedelta(minutes=1))


def test_a_vend_succeeds_with_the_broker_down_and_its_sms_goes_out_when_it_returns(
    vend, vending_keys, in_campaign, meter_factory, broker_down
):
    meter = meter_factory.create()
    response = vend(meter, reference="OUT-1")
    assert response.status_code == 201
    assert response.json()["tokens"][-1]["kind"] == "credit"
    message = Message.objects.get(vend_id=Vend.objects.get(reference="OUT-1").pk)
    assert message.status == "queued" and MemoryBackend.outbox == []  # kept, not lost

    # the broker comes back (here: tasks run in-process again) and the periodic sweep runs
    _point_celery_at(CLOSED_PORT_BROKER, eager=True)
    assert _sweep_later()["dispatched"] >= 1
    message.refresh_from_db()
    assert message.status == "sent"
    assert [sms.recipient for sms in MemoryBackend.outbox] == [meter.phone]


def test_a_vend_succeeds_while_the_gateway_fails_and_the_sms_is_retried(vend, vending_keys, in_campaign, meter_factory):
    MemoryBackend.script = [SendResult(outcome="retry", error="HTTP 500 from the gateway")]
    meter = meter_factory.create()
    response = vend(meter, reference="OUT-2")
    assert response.status_code == 201
    message = Message.objects.get(vend_id=Vend.objects.get(reference="OUT-2").pk)
    assert message.status == "queued" and message.attempts == 1 and "500" in message.last_error
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    _sweep_later()
    message.refresh_from_db()
    assert message.status == "sent" and message.attempts == 2
    assert [sms.recipient for sms in MemoryBackend.outbox] == [meter.phone]
