"""The schedule preview's aggregates: exact against the meter rows through every change."""

from __future__ import annotations

import csv
import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import CampaignSegment, CampaignTarget, MeterSegment
from campaigns.selectors import batch_candidates
from campaigns.services import (
    batch_cancel,
    batch_preview,
    batch_schedule,
    enrollment_confirm,
    enrollment_flag_non_compliant,
    meter_segments_refresh,
)
from meters.models import Meter
from meters.services import HEADER, meter_import
from tokens.sts import luhn_check_digit

pytestmark = pytest.mark.django_db

SELECTIONS = [([], []), (["Nairobi"], []), (["Coast"], ["600675"]), (["Nairobi", "Coast"], []), (["Nowhere"], [])]


def _assert_preview_exact(campaign, *, limit: int = 1000) -> None:
    for regions, sgcs in SELECTIONS:
        exact = batch_candidates(campaign=campaign, regions=regions, sgcs=sgcs).count()
        preview = batch_preview(campaign=campaign, regions=regions, sgcs=sgcs, limit=limit, scheduled_at=timezone.now())
        assert preview["matched"] == min(exact, limit), (regions, sgcs)


@pytest.fixture
def register(meter_factory):
    meter_factory.create_batch(6, region="Nairobi")
    meter_factory.create_batch(5, region="Coast")
    meter_factory.create_batch(3, region="Coast", krn=2)  # already on the new key: never a candidate
    meter_factory.create_batch(2, region="Coast", status=Meter.Status.RETIRED)
    meter_segments_refresh()


def test_the_preview_reads_the_aggregates_not_the_meters(campaign, register, django_assert_max_num_queries):
    assert MeterSegment.objects.filter(status="active", krn=1).count() == 2
    with django_assert_max_num_queries(4):
        preview = batch_preview(campaign=campaign, regions=[], sgcs=[], limit=100, scheduled_at=timezone.now())
    assert preview["matched"] == 11
    _assert_preview_exact(campaign)
    _assert_preview_exact(campaign, limit=4)


def test_scheduling_cancelling_and_status_changes_keep_them_exact(campaign, register, now):
    first = batch_schedule(campaign=campaign, regions=["Nairobi"], sgcs=[], limit=4, scheduled_at=now)
    _assert_preview_exact(campaign)
    second = batch_schedule(campaign=campaign, regions=["Coast"], sgcs=[], limit=3, scheduled_at=now)
    assert CampaignSegment.objects.get(campaign=campaign, region="Coast").enrolled_active == 3
    _assert_preview_exact(campaign)

    enrollment = first.enrollments.first()
    enrollment_flag_non_compliant(enrollment=enrollment, actor_label="test", reason="tamper seal broken")
    _assert_preview_exact(campaign)
    enrollment_confirm(enrollment=enrollment, actor_label="test")
    _assert_preview_exact(campaign)

    batch_cancel(batch=second, actor_label="test")
    assert CampaignSegment.objects.get(campaign=campaign, region="Coast").enrolled_active == 0
    _assert_preview_exact(campaign)
    # The recount from the rows agrees with what the services maintained.
    kept = sorted(CampaignSegment.objects.filter(enrolled_active__gt=0).values_list("region", "enrolled_active"))
    meter_segments_refresh()
    assert sorted(CampaignSegment.objects.values_list("region", "enrolled_active")) == kept


def test_a_refused_batch_leaves_nothing_behind(campaign, register, now):
    from campaigns.services import CapacityExceeded

    campaign.daily_capacity = 5
    campaign.save()
    with pytest.raises(CapacityExceeded) as refused:
        batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=10, scheduled_at=now)
    assert refused.value.adding == 10
    assert not campaign.batches.exists() and not campaign.enrollments.exists()
    assert not CampaignSegment.objects.filter(enrolled_active__gt=0).exists()


def test_the_meter_import_recounts_segments_and_targets(campaign, tmp_path):
    path = tmp_path / "register.csv"
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(7):
            partial = f"58{n:08d}"
            writer.writerow(
                [
                    partial + str(luhn_check_digit(partial)),
                    "600675",
                    "1",
                    "1",
                    "2",
                    "07",
                    "02",
                    "1993",
                    "255",
                    f"A{n}",
                    f"Customer {n}",
                    f"+2547{n:08d}",
                    "Nairobi" if n < 4 else "Coast",
                ]
            )
    result = meter_import(path=path, actor_label="test")
    assert result.inserted == 7
    assert dict(MeterSegment.objects.filter(status="active").values_list("region", "meters")) == {
        "Nairobi": 4,
        "Coast": 3,
    }
    assert CampaignTarget.objects.get(campaign=campaign).meters == 7
    _assert_preview_exact(campaign)
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=2, scheduled_at=timezone.now() + dt.timedelta(days=1))
    _assert_preview_exact(campaign)
