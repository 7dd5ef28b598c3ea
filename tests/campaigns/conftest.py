"""Fixtures for campaign tests."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import campaign_create


@pytest.fixture
def campaign(db) -> Campaign:
    return campaign_create(
        name="Test campaign",
        sgcs=["600675"],
        from_krn=1,
        to_krn=2,
        deadline=dt.date(2024, 8, 31),
        daily_capacity=1000,
        actor_label="test",
    )


@pytest.fixture
def now() -> dt.datetime:
    return timezone.now()
