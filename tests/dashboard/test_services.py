"""Dashboard read models: projection, series, vending aggregates, CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Enrollment
from campaigns.services import batch_schedule, enrollment_mark_failed
from dashboard import services
from kplc_sts.csvsafe import csv_safe
from sms.models import Message, MessageTally
from tokens import stats
from tokens.models import ApiErrorStat, VendMinuteStat

from .factories import daily_history

pytestmark = pytest.mark.django_db


def test_projection_at_the_trailing_seven_day_rate(campaign):
    today = timezone.localdate()
    # Ten days of history: the first three are outside the 7-day window.
    daily_history(campaign, today=today, days=[(0, 0, 100, 0)] * 3 + [(0, 0, 10, 0)] * 7)
    projection = services.campaign_projection(campaign=campaign, target=1000, today=today)
    assert projection.window_days == 7 and projection.window_total == 70
    assert projection.rate_per_day == 10
    assert projection.done == 370 and projection.remaining == 630
    assert projection.projected_date == today + dt.timedelta(days=63)
    assert projection.days_left == 61  # deadline in 60 days, today included
    assert projection.needed_per_day == 11  # ceil(630 / 61)
    assert projection.on_track is False


def test_projection_with_no_activity_never_finishes(campaign):
    projection = services.campaign_projection(campaign=campaign, target=50, today=timezone.localdate())
    assert projection.projected_date is None and projection.on_track is False
    assert projection.needed_per_day == 1


def test_daily_series_fills_gaps_and_shows_days_ahead(campaign, meter_factory):
    today = timezone.localdate()
    daily_history(campaign, today=today, days=[(1, 1, 1, 1), (0, 0, 0, 0), (2, 2, 2, 2)])
    meter_factory.create_batch(3)
    in_three_days = timezone.make_aware(dt.datetime.combine(today + dt.timedelta(days=3), dt.time(9)))
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=in_three_days)
    series = services.campaign_daily_series(campaign=campaign, today=today)
    assert [row["day"] for row in series] == [today + dt.timedelta(days=n) for n in range(-3, 4)]
    assert [row["codes_issued"] for row in series] == [1, 0, 2, 0, 0, 0, 0]
    assert series[-1]["scheduled"] == 3


def test_vend_and_api_error_counters_add_up_per_minute(settings):
    now = timezone.now().replace(second=30)
    for _ in range(7):
        stats.vend_minute_record(with_codes=False, at=now)
    for _ in range(3):
        stats.vend_minute_record(with_codes=True, at=now)
    stats.vend_minute_record(with_codes=True, at=now - dt.timedelta(minutes=5))
    for code in ["UNKNOWN_METER", "UNKNOWN_METER", "AMOUNT_TOO_LOW"]:
        stats.api_error_record(code, at=now)
    stats.api_error_record("UNKNOWN_METER", at=now - dt.timedelta(hours=3))

    health = services.vending_health(now=now)
    assert health.current_per_minute == 10
    assert health.last_hour_vends == 11 and health.last_hour_with_codes == 4
    assert len(health.minutes) == 60 and health.minutes[-6]["vends"] == 1
    assert {e["code"]: (e["last_hour"], e["last_24h"]) for e in health.errors} == {
        "UNKNOWN_METER": (2, 3),
        "AMOUNT_TOO_LOW": (1, 1),
    }
    assert sum(VendMinuteStat.objects.values_list("vends", flat=True)) == 11
    assert ApiErrorStat.objects.filter(code="UNKNOWN_METER").count() == 2  # one row per minute


def test_sms_queue_depth_counts_queued_and_sending(campaign, meter_factory):
    meter = meter_factory.create()
    for status in ["queued", "queued", "sending", "delivered"]:
        Message.objects.create(recipient=meter.phone, body="x", purpose="care", status=status, meter=meter)
    queue = services.sms_queue_depth()
    assert (queue.queued, queue.sending, queue.queued_capped) == (2, 1, False)
    assert queue.oldest_queued_at is not None


def test_csv_safe_defuses_formulas_but_keeps_phone_numbers():
    assert csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_safe("@SUM(A1)") == "'@SUM(A1)"
    assert csv_safe("+254712345678") == "+254712345678"
    assert csv_safe("-5") == "-5"
    assert csv_safe("+cmd|x") == "'+cmd|x"
    assert csv_safe(["Nairobi", "Coast"]) == "Nairobi Coast"


def test_keyset_iteration_crosses_chunk_boundaries(meter_factory):
    from meters.models import Meter

    meters = meter_factory.create_batch(7)
    rows = list(services.keyset_iterate(Meter.objects.all(), fields=["meter_number"], chunk=3))
    assert [r[0] for r in rows] == [m.meter_number for m in sorted(meters, key=lambda m: m.pk)]


def test_enrollment_csv_export_streams_every_row_of_the_batch(client, auditor, campaign, meter_factory, tomorrow_9am):
    meter_factory.create_batch(6, region="Nairobi", customer_name="=cmd")
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=6, scheduled_at=tomorrow_9am)
    failed = Enrollment.objects.filter(batch=batch).order_by("id").first()
    enrollment_mark_failed(enrollment=failed, actor_label="test", reason="meter rejected codes")
    client.force_login(auditor)

    response = client.get(reverse("dashboard:export_csv", args=["enrollments"]), {"batch": batch.pk})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:4] == ["id", "batch", "origin", "meter_number"]
    assert len(rows) == 7
    assert {row[3] for row in rows[1:]} == set(batch.enrollments.values_list("meter__meter_number", flat=True))

    response = client.get(reverse("dashboard:export_csv", args=["enrollments"]), {"batch": batch.pk, "state": "failed"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 2 and rows[1][0] == str(failed.pk) and rows[1][-1] == "meter rejected codes"

    detail = client.get(reverse("dashboard:batch_detail", args=[batch.pk]))
    assert failed.meter.meter_number.encode() in detail.content


@pytest.mark.parametrize("name", sorted(services.EXPORTS))
def test_every_export_answers_with_a_header(client, auditor, campaign, name):
    client.force_login(auditor)
    response = client.get(reverse("dashboard:export_csv", args=[name]), {"campaign": campaign.pk})
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert body.splitlines()[0].split(",") == list(services.EXPORTS[name].header)


def test_unknown_export_is_404(client, auditor):
    client.force_login(auditor)
    assert client.get("/dashboard/export/passwords.csv").status_code == 404


def test_batch_detail_shows_sms_failure_reasons_and_delivery_rate(
    client, auditor, campaign, meter_factory, tomorrow_9am
):
    meters = meter_factory.create_batch(4)
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=4, scheduled_at=tomorrow_9am)
    for meter, status, reason in zip(
        meters,
        ["failed", "rejected", "failed", "delivered"],
        ["UserInBlacklist", "InvalidPhoneNumber", "UserInBlacklist", ""],
        strict=True,
    ):
        Message.objects.create(
            recipient=meter.phone,
            body="x",
            purpose="notice",
            status=status,
            failure_reason=reason,
            meter=meter,
            batch_id=batch.pk,
        )
    MessageTally.objects.create(batch_id=batch.pk, sent=4, delivered=1, failed=3)
    assert services.batch_failure_reasons(batch=batch) == [
        {"reason": "UserInBlacklist", "count": 2},
        {"reason": "InvalidPhoneNumber", "count": 1},
    ]
    client.force_login(auditor)
    page = client.get(reverse("dashboard:batch_detail", args=[batch.pk]))
    assert page.context["sms"].delivery_rate == 25.0
    assert b"UserInBlacklist" in page.content and b"25.0 %" in page.content
