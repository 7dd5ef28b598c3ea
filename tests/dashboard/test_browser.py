"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from campaigns.models import Batch, Campaign, CampaignTarget, Enrollment
from meters.models import Meter
from tests.browser import chromium_page
from tests.conftest import STAFF_PASSWORD

from .factories import daily_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Counts the canvas pixels that are drawn (alpha > 0) and those close to a given colour.
PIXELS_JS = """
([selector, rgb]) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0, matching = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0) drawn++;
    if (data[i + 3] > 200 && Math.abs(data[i] - rgb[0]) < 12 && Math.abs(data[i + 1] - rgb[1]) < 12
        && Math.abs(data[i + 2] - rgb[2]) < 12) matching++;
  }
  return {drawn, matching, width: canvas.width, height: canvas.height, png: canvas.toDataURL().length};
}
"""
CODES_RGB = [0xF2, 0xA9, 0x00]


@pytest.fixture
def page(transactional_db, live_server, monkeypatch):
    yield from chromium_page(monkeypatch)


def _login(page, live_server, user):
    page.goto(f"{live_server.url}/dashboard/")
    assert "/accounts/login/" in page.url  # anonymous: sent to the login page
    page.fill("#id_username", user.username)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/"))


def test_manager_schedules_a_batch_through_the_form_and_finds_it_in_the_list(
    page, live_server, manager, campaign, meter_factory
):
    meter_factory.create_batch(12, region="Nairobi")
    meter_factory.create_batch(5, region="Mombasa")
    _login(page, live_server, manager)

    page.click("text=Schedule a batch")
    page.wait_for_selector("#schedule-form")
    page.select_option("#id_regions", ["Nairobi"])
    page.fill("#id_limit", "7")
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    page.fill("#id_date", tomorrow.isoformat())
    page.fill("#id_time", "10:30")
    # The live preview asks the JSON endpoint: 7 of the 12 Nairobi meters, within capacity 20.
    page.wait_for_selector("#preview-body[data-matched='7']")
    assert page.inner_text("#preview-body [data-field=capacity]") == "20"
    assert "Within the daily capacity" in page.inner_text("#preview-body")

    page.click("#schedule-submit")
    page.wait_for_url(re.compile(r"/dashboard/batches/\d+/$"))
    assert "Batch 1 scheduled: 7 meters" in page.inner_text(".messages")

    batch = Batch.objects.get(campaign=campaign)
    assert batch.enrolled == 7 == Enrollment.objects.filter(batch=batch).count()
    assert set(Meter.objects.filter(enrollments__batch=batch).values_list("region", flat=True)) == {"Nairobi"}
    assert timezone.localtime(batch.scheduled_at) == timezone.make_aware(dt.datetime.combine(tomorrow, dt.time(10, 30)))

    page.click("nav >> text=Batches")
    row = page.locator("#batch-table tr[data-batch='1']")
    assert row.locator("[data-col=enrolled]").inner_text() == "7"
    assert "Scheduled" in row.inner_text()


def test_schedule_form_refuses_an_over_capacity_day_until_the_override_is_ticked(
    page, live_server, manager, campaign, meter_factory
):
    meter_factory.create_batch(25, region="Nairobi")
    _login(page, live_server, manager)
    page.goto(f"{live_server.url}/dashboard/schedule/?campaign={campaign.pk}")
    page.fill("#id_limit", "25")
    page.fill("#id_date", (timezone.localdate() + dt.timedelta(days=2)).isoformat())
    page.fill("#id_time", "08:00")
    page.wait_for_selector("#preview-body[data-matched='25']")
    assert "Over the daily capacity by 5" in page.inner_text("#preview-body")

    page.click("#schedule-submit")
    page.wait_for_selector(".errorlist")
    assert "exceed the campaign's daily capacity of 20" in page.inner_text("#schedule-form")
    assert Batch.objects.count() == 0 and Enrollment.objects.count() == 0

    page.check("#id_override_capacity")
    page.click("#schedule-submit")
    page.wait_for_url(re.compile(r"/dashboard/batches/\d+/$"))
    assert "capacity overridden" in page.inner_text(".messages")
    assert Batch.objects.get().capacity_overridden is True


def test_overview_draws_its_charts_and_shows_the_database_figures(page, live_server, auditor, campaign, meter_factory):
    meter_factory.create_batch(30, region="Nairobi")
    meter_factory.create_batch(4, region="Nairobi", sgc="600999")  # not in the campaign
    today = timezone.localdate()
    daily_history(campaign, today=today, days=[(4, 4, 2, 1), (5, 5, 3, 2), (6, 6, 5, 3), (6, 6, 4, 2)])
    _login(page, live_server, auditor)
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")

    for selector in ("#daily-chart", "#progress-chart"):
        page.wait_for_selector(f"{selector}[data-ready='1']")
        pixels = page.evaluate(PIXELS_JS, [selector, CODES_RGB])
        assert pixels["width"] > 300 and pixels["height"] > 150
        assert pixels["drawn"] > 2000, pixels  # axes, legend, bars/lines
        assert pixels["matching"] > 30, pixels  # the codes-issued series is there, in its colour

    campaign.refresh_from_db()
    expected = {
        "target": Meter.objects.filter(sgc__in=campaign.sgcs, krn=campaign.from_krn).count(),
        "scheduled": campaign.enrolled,
        "notified": campaign.notified,
        "codes_issued": campaign.codes_issued,
        "confirmed": campaign.confirmed,
        "failed": campaign.failed,
        "non_compliant": campaign.non_compliant,
    }
    assert expected["target"] == 30 == CampaignTarget.objects.get(campaign=campaign).meters
    assert expected["codes_issued"] == 14
    shown = {
        key: int(page.get_attribute(f".kpi[data-kpi='{key}'] .value", "data-value").replace(",", ""))
        for key in expected
    }
    assert shown == expected
    # 14 meters updated over 4 days: 3.5/day, 16 left -> 5 more days.
    assert page.inner_text("[data-field=rate]") == "4 / day"
    assert page.inner_text("[data-field=remaining]") == "16"
    assert page.inner_text("[data-field=projected-date]") == f"{today + dt.timedelta(days=5):%-d %b %Y}"
    assert Campaign.objects.get().pk == campaign.pk
