"""Who may see and do what: managers schedule and steer; agents and auditors read; anonymous log in."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import Batch, Enrollment
from campaigns.services import batch_schedule
from tests.conftest import STAFF_PASSWORD

pytestmark = pytest.mark.django_db


def _schedule_post(campaign, tomorrow_9am, limit=3):
    return {
        "regions": ["Nairobi"],
        "sgcs": [],
        "limit": str(limit),
        "date": tomorrow_9am.date().isoformat(),
        "time": "09:00",
        "action": "schedule",
    }


def _read_urls(campaign, batch):
    return [
        reverse("dashboard:home"),
        reverse("dashboard:overview", args=[campaign.pk]),
        reverse("dashboard:overview_data", args=[campaign.pk]),
        reverse("dashboard:batch_list") + f"?campaign={campaign.pk}",
        reverse("dashboard:batch_detail", args=[batch.pk]),
        reverse("dashboard:vending_health"),
        reverse("dashboard:vending_data"),
        reverse("dashboard:export_csv", args=["batches"]),
    ]


@pytest.fixture
def batch(campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(4, region="Nairobi")
    return batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=2, scheduled_at=tomorrow_9am)


def test_anonymous_users_are_sent_to_the_login_page(client, campaign, batch):
    urls = [
        *_read_urls(campaign, batch),
        reverse("dashboard:batch_schedule"),
        reverse("dashboard:batch_preview"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url
    response = client.post(reverse("dashboard:batch_action", args=[batch.pk, "pause"]))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SCHEDULED


def test_login_page_renders_and_signs_in_to_the_dashboard(client, manager, campaign):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="username"' in page.content
    response = client.post("/accounts/login/", {"username": manager.username, "password": STAFF_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.get("/dashboard/", follow=True).status_code == 200


@pytest.mark.parametrize("role", ["agent", "auditor"])
def test_care_agents_and_auditors_read_but_cannot_act(request, client, role, campaign, batch, tomorrow_9am):
    user = request.getfixturevalue(role)
    client.force_login(user)
    for url in _read_urls(campaign, batch):
        assert client.get(url, follow=True).status_code == 200, url

    detail = client.get(reverse("dashboard:batch_detail", args=[batch.pk]))
    assert b"Pause" not in detail.content and b"Cancel batch" not in detail.content
    overview = client.get(reverse("dashboard:overview", args=[campaign.pk]))
    assert b"Schedule a batch" not in overview.content

    assert client.get(reverse("dashboard:batch_schedule")).status_code == 403
    assert client.get(reverse("dashboard:batch_preview")).status_code == 403
    before = Batch.objects.count()
    response = client.post(
        reverse("dashboard:batch_schedule") + f"?campaign={campaign.pk}", _schedule_post(campaign, tomorrow_9am)
    )
    assert response.status_code == 403
    assert Batch.objects.count() == before
    for action in ("pause", "cancel"):
        assert client.post(reverse("dashboard:batch_action", args=[batch.pk, action])).status_code == 403
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SCHEDULED


def test_staff_without_a_role_get_403(client, staff, campaign, batch):
    client.force_login(staff(None))
    assert client.get(reverse("dashboard:overview", args=[campaign.pk])).status_code == 403
    assert client.get(reverse("dashboard:export_csv", args=["enrollments"])).status_code == 403


def test_manager_schedules_pauses_resumes_and_cancels(client, manager, campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(5, region="Nairobi")
    client.force_login(manager)
    assert b"Schedule a batch" in client.get(reverse("dashboard:overview", args=[campaign.pk])).content

    response = client.post(
        reverse("dashboard:batch_schedule") + f"?campaign={campaign.pk}", _schedule_post(campaign, tomorrow_9am)
    )
    batch = Batch.objects.get(campaign=campaign)
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:batch_detail", args=[batch.pk])
    assert batch.enrolled == 3 and Enrollment.objects.filter(batch=batch).count() == 3
    assert batch.created_by == f"user:{manager.username}"

    detail = client.get(reverse("dashboard:batch_detail", args=[batch.pk]))
    assert b"Pause" in detail.content and b"Cancel batch" in detail.content

    client.post(reverse("dashboard:batch_action", args=[batch.pk, "pause"]))
    batch.refresh_from_db()
    assert batch.status == Batch.Status.PAUSED
    client.post(reverse("dashboard:batch_action", args=[batch.pk, "resume"]))
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SCHEDULED
    response = client.post(reverse("dashboard:batch_action", args=[batch.pk, "cancel"]), follow=True)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert b"Batch 1 cancelled" in response.content
    # A cancelled batch cannot be paused: the service refuses and the page says why.
    response = client.post(reverse("dashboard:batch_action", args=[batch.pk, "pause"]), follow=True)
    assert b"was not paused" in response.content
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED


def test_batch_actions_need_post_and_a_csrf_token(manager, campaign, batch):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)
    url = reverse("dashboard:batch_action", args=[batch.pk, "pause"])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SCHEDULED
