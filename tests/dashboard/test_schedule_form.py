"""The schedule form validates and explains, and creates nothing when it refuses."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from campaigns.models import Batch, CampaignDailyStat, Enrollment, EnrollmentEvent
from campaigns.services import batch_schedule

pytestmark = pytest.mark.django_db


def _post(client, campaign, **fields):
    data = {"regions": [], "sgcs": [], "limit": "5", "date": "", "time": "09:00", "action": "schedule", **fields}
    return client.post(reverse("dashboard:batch_schedule") + f"?campaign={campaign.pk}", data)


def _nothing_created():
    return (
        Batch.objects.count() == 0
        and Enrollment.objects.count() == 0
        and EnrollmentEvent.objects.count() == 0
        and not CampaignDailyStat.objects.filter(scheduled__gt=0).exists()
        and not AuditEvent.objects.filter(action__startswith="batch.").exists()
    )


@pytest.fixture
def logged_in(client, manager):
    client.force_login(manager)
    return client


def test_a_past_date_is_refused_with_an_explanation(logged_in, campaign, meter_factory):
    meter_factory.create_batch(3)
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    response = _post(logged_in, campaign, date=yesterday.isoformat())
    assert response.status_code == 200
    assert "is in the past" in response.context["form"].errors["date"][0]
    assert _nothing_created()


def test_zero_matching_meters_is_refused(logged_in, campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(3, region="Nairobi")
    response = _post(logged_in, campaign, regions=["Nairobi"], date=tomorrow_9am.date().isoformat())
    assert response.status_code == 302  # the three Nairobi meters are now enrolled
    response = _post(logged_in, campaign, regions=["Nairobi"], date=tomorrow_9am.date().isoformat())
    assert response.status_code == 200
    assert "No meters match this selection" in response.context["form"].non_field_errors()[0]
    assert response.context["preview"]["matched"] == 0
    assert Batch.objects.count() == 1 and Enrollment.objects.count() == 3


def test_an_unknown_region_is_a_field_error(logged_in, campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(2, region="Nairobi")
    response = _post(logged_in, campaign, regions=["Atlantis"], date=tomorrow_9am.date().isoformat())
    assert response.status_code == 200 and "regions" in response.context["form"].errors
    assert _nothing_created()


def test_over_capacity_is_refused_then_scheduled_with_the_audited_override(
    logged_in, manager, campaign, meter_factory, tomorrow_9am
):
    meter_factory.create_batch(30)
    day = tomorrow_9am.date().isoformat()
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=15, scheduled_at=tomorrow_9am)  # 15 of 20 used

    response = _post(logged_in, campaign, limit="10", date=day)
    assert response.status_code == 200
    error = response.context["form"].errors["limit"][0]
    assert "already has 15 meters scheduled" in error and "capacity of 20" in error and "at most 5" in error
    assert response.context["preview"]["over_capacity"] is True
    assert Batch.objects.count() == 1 and Enrollment.objects.count() == 15

    response = _post(logged_in, campaign, limit="10", date=day, override_capacity="on")
    assert response.status_code == 302
    batch = Batch.objects.get(number=2)
    assert batch.capacity_overridden and batch.enrolled == 10
    event = AuditEvent.objects.get(action="batch.capacity_overridden")
    assert event.actor == manager and event.object_id == str(batch.pk)
    assert CampaignDailyStat.objects.get(campaign=campaign, day=tomorrow_9am.date()).scheduled == 25


def test_preview_button_works_without_javascript(logged_in, campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(8, region="Mombasa")
    response = _post(
        logged_in, campaign, regions=["Mombasa"], limit="6", date=tomorrow_9am.date().isoformat(), action="preview"
    )
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview["matched"] == 6 and preview["capacity"] == 20 and preview["over_capacity"] is False
    assert b'data-field="matched">6<' in response.content
    assert _nothing_created()


def test_preview_json_reports_matches_and_the_days_load(logged_in, campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(12, region="Nairobi")
    meter_factory.create_batch(4, region="Kisumu", sgc="600676")
    batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=9, scheduled_at=tomorrow_9am)
    url = reverse("dashboard:batch_preview")
    query = {"campaign": campaign.pk, "limit": 50, "date": tomorrow_9am.date().isoformat(), "time": "14:00"}

    body = logged_in.get(url, query).json()
    assert body["valid"] and body["matched"] == 7  # 3 Nairobi + 4 Kisumu left
    assert (body["day_load"], body["load_after"], body["capacity"]) == (9, 16, 20)
    assert body["over_capacity"] is False

    body = logged_in.get(url, {**query, "sgcs": "600676"}).json()
    assert body["matched"] == 4

    response = logged_in.get(url, {**query, "date": "2001-01-01"})
    assert response.status_code == 400 and "date" in response.json()["errors"]


def test_the_form_suggests_what_still_fits_tomorrow(logged_in, campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(12)
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=8, scheduled_at=tomorrow_9am, actor_label="test")
    response = logged_in.get(reverse("dashboard:batch_schedule") + f"?campaign={campaign.pk}")
    assert response.status_code == 200
    assert response.context["form"].initial["limit"] == campaign.daily_capacity - 8
