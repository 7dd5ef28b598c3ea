"""Delivery reports that never find their message are given up on after SMS_REPORT_MATCH_SECONDS,
so they cannot crowd a real late report out of the sweep; and reports (phone numbers) go with the
SMS log's retention."""

from __future__ import annotations

import datetime as dt

import pytest

from kplc_sts import clock
from sms.models import DeliveryReport, Message, MessageLog
from sms.services import (
    delivery_reports_apply_pending,
    delivery_reports_prune,
    log_archive_cutoff,
    log_reports_apply,
    messages_log_settled,
)
from sms.tasks import reports_prune_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_sent(sent_notice, settings) -> MessageLog:
    """A notice sent, never reported, and moved to the log as sent."""
    later = clock.now() + dt.timedelta(seconds=settings.SMS_LOG_UNREPORTED_SECONDS + 60)
    assert messages_log_settled(now=later) == 1
    return MessageLog.objects.get(pk=sent_notice.pk)


def _orphans(count: int, *, age: dt.timedelta) -> None:
    at = clock.now() - age
    DeliveryReport.objects.bulk_create(
        DeliveryReport(provider_message_id=f"ATX-elsewhere-{n}", status="Success", received_at=at) for n in range(count)
    )


def test_old_unmatched_reports_do_not_crowd_a_late_one_out_of_the_sweep(settings, logged_sent) -> None:
    # Reports for another application's messages (same gateway account): never matched. Before the
    # bound they came first, by id, and filled every pass.
    _orphans(3, age=dt.timedelta(seconds=settings.SMS_REPORT_MATCH_SECONDS + 3600))
    DeliveryReport.objects.create(provider_message_id=logged_sent.provider_message_id, status="Success")
    assert log_reports_apply(limit=2) == 1
    logged_sent.refresh_from_db()
    assert logged_sent.status == "delivered"
    assert DeliveryReport.objects.filter(applied_at__isnull=True).count() == 3  # kept, no longer looked at


def test_a_recent_unmatched_report_is_still_looked_for(settings, logged_sent) -> None:
    # Inside the window a report that beat its message is matched once the message shows up.
    DeliveryReport.objects.create(
        provider_message_id=logged_sent.provider_message_id,
        status="Failed",
        received_at=clock.now() - dt.timedelta(seconds=settings.SMS_REPORT_MATCH_SECONDS - 3600),
    )
    assert log_reports_apply() == 1
    logged_sent.refresh_from_db()
    assert logged_sent.status == "failed"


def test_the_outbox_sweep_looks_only_inside_the_window(settings, meter_factory) -> None:
    message = Message.objects.create(
        recipient="+254712000001", body="KPLC", purpose="notice", status="sent", provider_message_id="ATX-1"
    )
    report = DeliveryReport.objects.create(
        provider_message_id="ATX-1",
        status="Success",
        received_at=clock.now() - dt.timedelta(seconds=settings.SMS_REPORT_MATCH_SECONDS + 60),
    )
    assert delivery_reports_apply_pending() == 0
    report.received_at = clock.now()
    report.save(update_fields=["received_at"])
    assert delivery_reports_apply_pending() == 1
    message.refresh_from_db()
    assert message.status == "delivered"


def test_reports_older_than_the_log_retention_are_deleted_in_chunks(settings) -> None:
    settings.SMS_LOG_MONTHS = 2
    cutoff = log_archive_cutoff()
    _orphans(5, age=clock.now() - cutoff + dt.timedelta(days=1))  # received before the cutoff
    DeliveryReport.objects.create(provider_message_id="ATX-kept", status="Success", received_at=cutoff)
    assert delivery_reports_prune(chunk=2) == 5
    assert list(DeliveryReport.objects.values_list("provider_message_id", flat=True)) == ["ATX-kept"]
    assert delivery_reports_prune() == 0
    _orphans(1, age=clock.now() - cutoff + dt.timedelta(hours=1))
    assert reports_prune_task.apply().get() == 1
    assert settings.CELERY_BEAT_SCHEDULE["sms-reports-prune"]["task"] == "sms.reports_prune"
