"""Fixtures for the staff dashboard tests: staff users per role, a campaign, meters."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from accounts.roles import AUDITOR, CAMPAIGN_MANAGER, CARE_AGENT
from campaigns.models import Campaign
from campaigns.services import campaign_create


@pytest.fixture
def manager(staff) -> User:
    return staff(CAMPAIGN_MANAGER)


@pytest.fixture
def agent(staff) -> User:
    return staff(CARE_AGENT)


@pytest.fixture
def auditor(staff) -> User:
    return staff(AUDITOR)


@pytest.fixture
def campaign(db) -> Campaign:
    return campaign_create(
        name="Update Token Meter Yako",
        sgcs=["600675", "600676"],
        from_krn=1,
        to_krn=2,
        deadline=timezone.localdate() + dt.timedelta(days=60),
        daily_capacity=20,
        actor_label="test",
    )


@pytest.fixture
def tomorrow_9am() -> dt.datetime:
    day = timezone.localdate() + dt.timedelta(days=1)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(9, 0)))
