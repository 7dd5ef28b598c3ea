"""The dashboard's progress pictures in headless Chromium: the regions chart and table, the batch
list's stacked bars, the batch page's deliveries over time."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import Batch, Enrollment
from campaigns.services import batch_schedule, meter_mark_codes_issued, meter_segments_refresh
from sms.models import Message
from tests.browser import chromium_page
from tests.dashboard.test_browser import PIXELS_JS, _login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GREEN_RGB = [0x1C, 0x8A, 0x4E]  # delivered, and regions on track


@pytest.fixture
def page(transactional_db, live_server, monkeypatch):
    yield from chromium_page(monkeypatch)


def test_regions_batches_and_deliveries_are_drawn(page, live_server, auditor, campaign, meter_factory):
    for region, count in (("Nairobi", 8), ("Mombasa", 6), ("Kisumu", 4)):
        meter_factory.create_batch(count, region=region)
    meter_segments_refresh()
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=18, scheduled_at=timezone.now())
    for meter in [e.meter for e in Enrollment.objects.filter(batch=batch, meter__region="Nairobi")][:4]:
        meter_mark_codes_issued(meter=meter, campaign=campaign, origin="till", actor_label="partner:1")
    Batch.objects.filter(pk=batch.pk).update(notified=14, failed=2)
    start = timezone.now() - dt.timedelta(minutes=20)
    for index, enrollment in enumerate(Enrollment.objects.filter(batch=batch).select_related("meter")):
        Message.objects.create(
            meter=enrollment.meter,
            recipient=enrollment.meter.phone,
            body="x",
            purpose="notice",
            batch_id=batch.pk,
            status="delivered",
            delivered_at=start + dt.timedelta(minutes=index),
        )
    _login(page, live_server, auditor)

    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")
    page.wait_for_selector("#region-chart[data-ready='1']")
    assert page.evaluate(PIXELS_JS, ["#region-chart", [0xE6, 0xEB, 0xF1]])["drawn"] > 2000
    rows = page.locator("#region-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.region)")
    assert rows[-1] == "Nairobi" and set(rows) == {"Nairobi", "Mombasa", "Kisumu"}  # the moving region last
    nairobi = page.locator("#region-table tr[data-region='Nairobi']")
    assert nairobi.locator("[data-col=target]").inner_text() == "8"
    assert nairobi.locator("[data-col=share]").inner_text() == "50.0 %"
    # The two cards of a row start level (the right-hand one used to sit lower).
    tops = page.locator(".grid-3 > .card").evaluate_all("cards => cards.map(c => c.getBoundingClientRect().top)")
    assert len(tops) == 2 and abs(tops[0] - tops[1]) < 1

    page.goto(f"{live_server.url}/dashboard/batches/?campaign={campaign.pk}")
    bar = page.locator("#batch-table tr[data-batch='1'] [data-col=bar]")
    widths = {
        part: bar.locator(f"[data-part={part}]").evaluate("el => el.getBoundingClientRect().width")
        for part in ("codes", "notified", "failed")
    }
    whole = bar.evaluate("el => el.getBoundingClientRect().width")
    # 4 of 18 with codes, 10 notified only, 2 failed.
    assert widths["codes"] == pytest.approx(whole * 4 / 18, abs=1.5)
    assert widths["notified"] == pytest.approx(whole * 10 / 18, abs=1.5)
    assert widths["failed"] == pytest.approx(whole * 2 / 18, abs=1.5)

    page.goto(f"{live_server.url}/dashboard/batches/{batch.pk}/")
    page.wait_for_selector("#delivery-chart[data-ready='1']")
    pixels = page.evaluate(PIXELS_JS, ["#delivery-chart", GREEN_RGB])
    assert pixels["drawn"] > 2000 and pixels["matching"] > 30, pixels


def test_the_schedule_preview_names_a_wrong_field_by_its_label(page, live_server, manager, campaign, meter_factory):
    meter_factory.create_batch(3, region="Nairobi")
    _login(page, live_server, manager)
    page.goto(f"{live_server.url}/dashboard/schedule/?campaign={campaign.pk}")
    page.fill("#id_date", (timezone.localdate() - dt.timedelta(days=2)).isoformat())
    page.fill("#id_time", "08:00")
    page.wait_for_selector("#preview-body .warn-box:has-text('in the past')")
    said = page.inner_text("#preview-body .warn-box")
    assert said.startswith("Date: ") and "date:" not in said
