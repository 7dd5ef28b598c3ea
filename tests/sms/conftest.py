"""Fixtures for the SMS pipeline: the in-memory backend and the local Africa's Talking gateway."""

from __future__ import annotations

import pytest

from sms.backends import _backend
from sms.fake_gateway import FakeAfricasTalking, GatewayConfig


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
