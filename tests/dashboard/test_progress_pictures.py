"""Progress by region, the batch list's stacked bars and the batch's deliveries over time: each
figure against a recount from the rows."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Batch, Enrollment
from campaigns.selectors import campaign_region_live, campaign_region_recount
from campaigns.services import (
    batch_schedule,
    meter_mark_codes_issued,
    meter_mark_confirmed,
    meter_mark_non_compliant,
    meter_segments_refresh,
)
from dashboard.services import batch_delivery_series, batch_progress_bar, campaign_region_progress
from sms.models import Message

pytestmark = pytest.mark.django_db


def _at(day: dt.date, hour: int = 10) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour, 0)))


@pytest.fixture
def regional(campaign, meter_factory):
    meters = {
        "Nairobi": meter_factory.create_batch(10, region="Nairobi"),
        "Mombasa": meter_factory.create_batch(10, region="Mombasa"),
        "Kisumu": meter_factory.create_batch(4, region="Kisumu"),
    }
    meter_factory.create_batch(3, region="Nairobi", sgc="600999")  # not in the campaign's supply groups
    meter_segments_refresh()  # as the register import does
    return meters


def test_progress_by_region_matches_a_recount_and_puts_lagging_regions_first(campaign, regional):
    today = timezone.localdate()
    batch_schedule(campaign=campaign, regions=["Nairobi", "Mombasa"], sgcs=[], limit=20, scheduled_at=timezone.now())
    with time_machine.travel(_at(today - dt.timedelta(days=3)), tick=False):
        for meter in regional["Nairobi"][:6]:
            meter_mark_codes_issued(meter=meter, campaign=campaign, origin="till", actor_label="partner:1")
    with time_machine.travel(_at(today - dt.timedelta(days=1)), tick=False):
        meter_mark_codes_issued(meter=regional["Mombasa"][0], campaign=campaign, origin="till", actor_label="p")
        for meter in regional["Nairobi"][:2]:
            meter_mark_confirmed(meter=meter, origin="ussd", actor_label="ussd:x")  # already counted as updated
        # Outside any batch: a Kisumu meter flagged by care still counts for Kisumu.
        meter_mark_non_compliant(meter=regional["Kisumu"][0], origin="care", actor_label="user:a", reason="old")

    assert campaign_region_live(campaign=campaign) == campaign_region_recount(campaign=campaign)
    assert sum(campaign_region_recount(campaign=campaign).values()) == 8

    regions = campaign_region_progress(campaign=campaign, today=today)
    rows = {r.region: r for r in regions}
    assert {name: (r.target, r.done) for name, r in rows.items()} == {
        "Nairobi": (10, 6),
        "Mombasa": (10, 1),
        "Kisumu": (4, 1),
    }
    assert rows["Nairobi"].share == 60.0 and rows["Kisumu"].share == 25.0
    # Paces over the 3 days since the campaign's first activity: 6/3, 1/3 and 1/3 per day.
    assert (rows["Nairobi"].rate_per_day, round(rows["Mombasa"].rate_per_day, 3)) == (2.0, 0.333)
    assert [r.region for r in regions] == ["Mombasa", "Kisumu", "Nairobi"]  # slowest against need, then share


def test_a_region_that_is_not_moving_comes_before_those_that_are(campaign, regional):
    today = timezone.localdate()
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=20, scheduled_at=timezone.now())
    with time_machine.travel(_at(today - dt.timedelta(days=2)), tick=False):
        meter_mark_codes_issued(meter=regional["Nairobi"][0], campaign=campaign, origin="till", actor_label="p")
        meter_mark_codes_issued(meter=regional["Kisumu"][0], campaign=campaign, origin="till", actor_label="p")
    regions = campaign_region_progress(campaign=campaign, today=today)
    assert regions[0].region == "Mombasa" and regions[0].projected_date is None and not regions[0].on_track


def test_the_overview_lists_the_regions_and_its_json_feeds_the_chart(client, auditor, campaign, regional):
    client.force_login(auditor)
    page = client.get(reverse("dashboard:overview", args=[campaign.pk])).content.decode()
    assert 'id="region-table"' in page and 'data-region="Nairobi"' in page
    data = client.get(reverse("dashboard:overview_data", args=[campaign.pk])).json()
    assert {r["region"]: r["target"] for r in data["regions"]} == {"Nairobi": 10, "Mombasa": 10, "Kisumu": 4}


def test_latest_batches_are_sorted_by_time_not_number(client, auditor, campaign, regional):
    now = timezone.now()
    later = batch_schedule(
        campaign=campaign, regions=["Nairobi"], sgcs=[], limit=2, scheduled_at=now + dt.timedelta(days=3)
    )
    sooner = batch_schedule(
        campaign=campaign, regions=["Mombasa"], sgcs=[], limit=2, scheduled_at=now + dt.timedelta(days=1)
    )
    client.force_login(auditor)
    recent = client.get(reverse("dashboard:overview", args=[campaign.pk])).context["recent_batches"]
    assert [b.pk for b in recent] == [later.pk, sooner.pk]  # the latest first, although numbered first


def test_the_stacked_bar_of_a_batch_adds_up_to_its_counters(campaign, regional):
    batch = batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=10, scheduled_at=timezone.now())
    Batch.objects.filter(pk=batch.pk).update(notified=9, codes_issued=5, confirmed=2, failed=1)
    batch.refresh_from_db()
    parts = {part.key: (part.value, round(part.share, 1)) for part in batch_progress_bar(batch)}
    assert parts == {"confirmed": (2, 20.0), "codes": (3, 30.0), "notified": (4, 40.0), "failed": (1, 10.0)}
    Batch.objects.filter(pk=batch.pk).update(failed=5)  # overlapping counts never overflow the bar
    batch.refresh_from_db()
    assert sum(part.share for part in batch_progress_bar(batch)) == pytest.approx(100.0)


def test_deliveries_over_time_count_the_batch_notices(campaign, regional):
    batch = batch_schedule(campaign=campaign, regions=["Mombasa"], sgcs=[], limit=10, scheduled_at=timezone.now())
    start = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=30)
    for index, enrollment in enumerate(Enrollment.objects.filter(batch=batch).select_related("meter")):
        Message.objects.create(
            meter=enrollment.meter,
            recipient=enrollment.meter.phone,
            body="x",
            purpose="notice",
            batch_id=batch.pk,
            status="failed" if index == 9 else "delivered",
            delivered_at=start + dt.timedelta(minutes=index // 4),
        )
    series = batch_delivery_series(batch=batch)
    assert series["unit"] == "minute" and series["enrolled"] == 10
    assert series["delivered"] == [0, 4, 4, 1] and series["failed"] == [0, 0, 0, 1]
    assert len(series["buckets"]) == 4 and series["buckets"][1].endswith("+03:00")


def test_batch_actions_say_what_they_did(client, manager, campaign, regional):
    batch = batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=3, scheduled_at=timezone.now())
    client.force_login(manager)
    response = client.post(reverse("dashboard:batch_action", args=[batch.pk, "cancel"]))
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == [
        "Batch 1 cancelled: its unsent notices are cancelled and the meters not yet notified are free for "
        "another batch."
    ]
