from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from campaigns.models import Batch, Campaign, CampaignDailyStat, Enrollment, EnrollmentEvent
from campaigns.services import (
    CampaignError,
    CapacityExceeded,
    batch_preview,
    batch_schedule,
    campaign_create,
)

pytestmark = pytest.mark.django_db


def test_schedule_enrolls_only_matching_unenrolled_meters_up_to_the_limit(campaign, meter_factory, now):
    wanted = meter_factory.create_batch(5, region="Nairobi")
    meter_factory.create_batch(2, region="Coast")  # other region
    meter_factory.create(sgc="600999")  # other supply group
    meter_factory.create(krn=2)  # already on the new key

    batch = batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=3, scheduled_at=now)
    second = batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=10, scheduled_at=now)

    first_ids = set(batch.enrollments.values_list("meter_id", flat=True))
    second_ids = set(second.enrollments.values_list("meter_id", flat=True))
    assert len(first_ids) == 3 and len(second_ids) == 2
    assert first_ids | second_ids == {m.pk for m in wanted}
    assert (batch.number, second.number) == (1, 2)
    assert batch.enrolled == 3 and second.enrolled == 2
    campaign.refresh_from_db()
    assert campaign.enrolled == 5
    assert EnrollmentEvent.objects.filter(to_state="scheduled").count() == 5
    assert CampaignDailyStat.objects.get(campaign=campaign).scheduled == 5
    with pytest.raises(CampaignError):
        batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=10, scheduled_at=now)


def test_one_enrollment_per_meter_per_campaign_is_a_database_rule(campaign, meter_factory, now):
    meter = meter_factory.create()
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=1, scheduled_at=now)
    with pytest.raises(IntegrityError), transaction.atomic():
        Enrollment.objects.create(campaign=campaign, meter=meter, batch=batch, enrolled_at=now, state_changed_at=now)


def test_capacity_is_refused_unless_overridden_and_the_override_is_audited(campaign, meter_factory, now):
    Campaign.objects.filter(pk=campaign.pk).update(daily_capacity=4)
    campaign.refresh_from_db()
    meter_factory.create_batch(6)
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=now)

    preview = batch_preview(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=now)
    assert preview["matched"] == 3 and preview["day_load"] == 3 and preview["over_capacity"] is True
    with pytest.raises(CapacityExceeded) as refused:
        batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=now)
    assert refused.value.load == 3 and refused.value.adding == 3
    assert Batch.objects.count() == 1  # nothing half-done

    # Another day has its own capacity.
    tomorrow = batch_preview(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=now + dt.timedelta(days=1))
    assert tomorrow["over_capacity"] is False

    batch = batch_schedule(
        campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=now, override_capacity=True, actor_label="mgr"
    )
    assert batch.capacity_overridden is True
    assert AuditEvent.objects.filter(action="batch.capacity_overridden", object_id=str(batch.pk)).exists()


def test_campaign_create_validates(db):
    with pytest.raises(CampaignError):
        campaign_create(name="x", sgcs=["12"], from_krn=1, to_krn=2, deadline=dt.date(2024, 8, 31), daily_capacity=1)
    with pytest.raises(CampaignError):
        campaign_create(
            name="x", sgcs=["600675"], from_krn=1, to_krn=1, deadline=dt.date(2024, 8, 31), daily_capacity=1
        )


def test_commands_print_stable_last_lines(db, meter_factory, capsys):
    meter_factory.create_batch(4)
    call_command(
        "create_campaign",
        "--name",
        "C",
        "--sgc",
        "600675",
        "--from-krn",
        "1",
        "--to-krn",
        "2",
        "--deadline",
        "2024-08-31",
        "--daily-capacity",
        "100",
    )
    campaign_id = int(capsys.readouterr().out.strip().splitlines()[-1])
    assert Campaign.objects.get(pk=campaign_id).sgcs == ["600675"]
    call_command("schedule_batch", "--campaign", str(campaign_id), "--limit", "3", "--at", "2030-01-01T09:00")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    batch = Batch.objects.get(campaign_id=campaign_id)
    assert last == f"batch {batch.pk}: 3 meters"


def test_after_scheduling_the_planner_knows_the_new_batch(
    campaign, meter_factory, now, django_capture_on_commit_callbacks
):
    # The outbox looks the batch's enrollments up by meter, a chunk at a time; with the statistics
    # of the table before the batch, PostgreSQL estimated a handful of rows and scanned the batch.
    meter_factory.create_batch(30)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=30, scheduled_at=now)
    assert len(callbacks) >= 1
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'campaigns_enrollment'::regclass")
            assert cursor.fetchone()[0] == batch.enrolled == 30
        else:
            cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'campaigns_enrollment' LIMIT 1")
            assert cursor.fetchone()[0].split()[0] == "30"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the vacuum lock is PostgreSQL's")
def test_the_statistics_refresh_steps_aside_for_a_vacuum_instead_of_waiting(db, caplog):
    # A VACUUM holds SHARE UPDATE EXCLUSIVE, which ANALYZE needs too. Waiting for it would stall the
    # scheduler's commit callbacks and, past deadlock_timeout, get an ordinary autovacuum cancelled.
    from kplc_sts.db import table_analyze

    other = connection.get_new_connection(connection.get_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE campaigns_enrollment IN SHARE UPDATE EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            # Without SKIP_LOCKED the ANALYZE would wait here, fail at the timeout and log it.
            cursor.execute("SET lock_timeout = '3s'")
        with caplog.at_level("WARNING", logger="kplc_sts.db"):
            table_analyze(Enrollment)
        assert not [record for record in caplog.records if "ANALYZE" in record.getMessage()]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        other.close()
