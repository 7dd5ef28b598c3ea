"""Campaign admin: read-only, enrollments with their events, search by meter number or phone."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from accounts.roles import AUDITOR, CAMPAIGN_MANAGER, CARE_AGENT
from campaigns.models import Enrollment
from campaigns.services import batch_schedule, enrollment_mark_notified

pytestmark = pytest.mark.django_db


@pytest.fixture
def login(client, staff):
    """login(role) -> a staff user in that role, logged in on `client`."""

    def log_in(role: str) -> User:
        user = staff(role)
        client.force_login(user)
        return user

    return log_in


@pytest.fixture
def enrolled(campaign, meter_factory, now):
    wanted = meter_factory(phone="+254712345678")
    other = meter_factory(phone="+254799000111")
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=2, scheduled_at=now)
    enrollment = Enrollment.objects.get(meter=wanted)
    enrollment_mark_notified(enrollment=enrollment, actor_label="sms")
    return batch, enrollment, Enrollment.objects.get(meter=other)


@pytest.mark.parametrize("role", [AUDITOR, CARE_AGENT, CAMPAIGN_MANAGER])
def test_every_role_reads_and_nobody_writes(client, login, enrolled, role):
    login(role)
    batch, enrollment, _ = enrolled
    for model in ("campaign", "batch", "enrollment", "enrollmentevent"):
        assert client.get(f"/admin/campaigns/{model}/").status_code == 200, model
        assert client.get(f"/admin/campaigns/{model}/add/").status_code == 403, model
    assert client.get(f"/admin/campaigns/batch/{batch.pk}/delete/").status_code == 403
    page = client.get(f"/admin/campaigns/enrollment/{enrollment.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_an_enrollment_page_shows_its_events(client, login, enrolled):
    login(AUDITOR)
    _, enrollment, _ = enrolled
    page = client.get(f"/admin/campaigns/enrollment/{enrollment.pk}/change/").content.decode()
    assert "scheduled" in page and "notified" in page and "batch 1" in page and "sms" in page


@pytest.mark.parametrize("term", ["0712 345 678", "+254712345678", "meter"])
def test_enrollments_by_phone_or_meter_number(client, login, enrolled, term):
    login(CARE_AGENT)
    _, wanted, other = enrolled
    term = wanted.meter.meter_number if term == "meter" else term
    page = client.get("/admin/campaigns/enrollment/", {"q": term}).content.decode()
    assert f"/admin/campaigns/enrollment/{wanted.pk}/change/" in page
    assert f"/admin/campaigns/enrollment/{other.pk}/change/" not in page
    page = client.get("/admin/campaigns/enrollmentevent/", {"q": term}).content.decode()
    for event in wanted.events.all():  # scheduled and notified
        assert f"/admin/campaigns/enrollmentevent/{event.pk}/change/" in page
    for event in other.events.all():
        assert f"/admin/campaigns/enrollmentevent/{event.pk}/change/" not in page


def test_filter_enrollments_by_state(client, login, enrolled):
    login(AUDITOR)
    _, wanted, other = enrolled
    page = client.get("/admin/campaigns/enrollment/", {"state__exact": "notified"}).content.decode()
    assert f"/admin/campaigns/enrollment/{wanted.pk}/change/" in page
    assert f"/admin/campaigns/enrollment/{other.pk}/change/" not in page
