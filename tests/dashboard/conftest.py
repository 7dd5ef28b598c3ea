"""Fixtures for the staff dashboard tests: staff users per role, a campaign, meters."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.utils import timezone

from accounts.roles import AUDITOR, CAMPAIGN_MANAGER, CARE_AGENT, roles_sync
from campaigns.models import Campaign
from campaigns.services import campaign_create

# Playwright's sync API runs an event loop in the test thread; Django refuses ORM calls from a
# thread with a running loop unless told otherwise. Only the browser tests need it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORD = "dash-test-pass-2024"


@pytest.fixture(autouse=True)
def _clear_cache():
    # The region list is cached; each test has its own meters.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(db):
    """make(role) -> a staff user in that role's group (None: no group), password PASSWORD."""

    def make(role: str | None, username: str | None = None) -> User:
        if role and not Group.objects.filter(name=role).exists():
            roles_sync()  # a transactional test's flush dropped the groups
        user = User.objects.create_user(username or (role or "nobody").split()[0].lower(), password=PASSWORD)
        user.is_staff = True
        user.save()
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


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
