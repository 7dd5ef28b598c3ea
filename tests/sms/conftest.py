"""Fixtures for the SMS pipeline: the in-memory backend and the local Africa's Talking gateway."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.services import batch_schedule, batches_start_due, campaign_create
from sms.backends import _backend
from sms.fake_gateway import FakeAfricasTalking, GatewayConfig
from sms.models import Message


@pytest.fixture
def fake_gateway():
    """A running local AT gateway (port chosen by the OS); configure it through `.config`."""
    gateway = FakeAfricasTalking(GatewayConfig(api_key="test-key", seed=1234)).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def at_backend(settings, fake_gateway):
    """Settings pointing the real africastalking SDK at the local gateway."""
    settings.SMS_BACKEND = "sms.backends.africastalking.AfricasTalkingBackend"
    settings.AT_API_URL = fake_gateway.url
    settings.AT_API_KEY = "test-key"
    settings.AT_USERNAME = "kplc"
    _backend.cache_clear()
    yield fake_gateway
    _backend.cache_clear()


@pytest.fixture
def sent_notice(meter_factory):
    """One campaign notice, sent and counted (no report yet)."""
    meter_factory.create()
    campaign = campaign_create(
        name="C", sgcs=["600675"], from_krn=1, to_krn=2, deadline=dt.date(2030, 1, 1), daily_capacity=100
    )
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=1, scheduled_at=campaign.created_at)
    batches_start_due()
    message = Message.objects.get(batch_id=batch.pk)
    assert message.status == "sent" and message.sent_counted
    return message
