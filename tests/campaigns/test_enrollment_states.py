from __future__ import annotations

import pytest

from campaigns.models import Batch, CampaignDailyStat, Enrollment
from campaigns.services import (
    EnrollmentStateError,
    batch_schedule,
    enrollment_confirm,
    enrollment_flag_non_compliant,
    enrollment_for_meter,
    enrollment_mark_codes_issued,
    enrollment_mark_failed,
    enrollment_mark_notified,
)
from meters.models import Meter

pytestmark = pytest.mark.django_db


@pytest.fixture
def enrollment(campaign, meter_factory, now) -> Enrollment:
    meter_factory.create()
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=1, scheduled_at=now)
    return Enrollment.objects.get()


def _counters(enrollment):
    batch = Batch.objects.get(pk=enrollment.batch_id)
    campaign = batch.campaign
    names = ["enrolled", "notified", "codes_issued", "confirmed", "failed", "non_compliant"]
    by_batch = {n: getattr(batch, n) for n in names}
    assert by_batch == {n: getattr(campaign, n) for n in names}  # one batch: the totals agree
    return by_batch


def test_the_happy_path_moves_the_funnel_and_writes_events(enrollment):
    assert enrollment_for_meter(enrollment.meter) == enrollment
    assert enrollment_mark_notified(enrollment=enrollment) is True
    assert enrollment_mark_codes_issued(enrollment=enrollment, actor_label="partner:1") is True
    assert enrollment_mark_codes_issued(enrollment=enrollment, actor_label="partner:1") is False  # a second vend
    assert Meter.objects.get(pk=enrollment.meter_id).key_state == Meter.KeyState.CODES_ISSUED
    assert enrollment_confirm(enrollment=enrollment, actor_label="ussd:+254700000000") is True
    assert _counters(enrollment) == {
        "enrolled": 1,
        "notified": 1,
        "codes_issued": 1,
        "confirmed": 1,
        "failed": 0,
        "non_compliant": 0,
    }
    events = list(enrollment.events.values_list("from_state", "to_state", "actor_label"))
    assert events == [
        ("", "scheduled", "system"),
        ("scheduled", "notified", "system"),
        ("notified", "codes_issued", "partner:1"),
        ("codes_issued", "confirmed", "ussd:+254700000000"),
    ]
    assert Meter.objects.get(pk=enrollment.meter_id).key_state == Meter.KeyState.CONFIRMED
    stat = CampaignDailyStat.objects.get()
    assert (stat.codes_issued, stat.confirmed) == (1, 1)


def test_failed_then_confirmed_leaves_the_failed_count(enrollment):
    enrollment_mark_codes_issued(enrollment=enrollment)
    enrollment_mark_failed(enrollment=enrollment, actor_label="ussd:+254700000000", reason="meter rejected code 1")
    assert _counters(enrollment)["failed"] == 1
    enrollment_confirm(enrollment=enrollment, actor_label="care:agent")
    counters = _counters(enrollment)
    assert counters["failed"] == 0 and counters["confirmed"] == 1


def test_non_compliant_flags_the_meter_and_confirmed_is_final(enrollment):
    enrollment_flag_non_compliant(enrollment=enrollment, actor_label="care:agent", reason="old meter model")
    meter = Meter.objects.get(pk=enrollment.meter_id)
    assert meter.status == Meter.Status.NON_COMPLIANT and meter.key_state == Meter.KeyState.NON_COMPLIANT
    assert _counters(enrollment)["non_compliant"] == 1
    with pytest.raises(EnrollmentStateError):
        enrollment_mark_codes_issued(enrollment=enrollment)
    enrollment_confirm(enrollment=enrollment, actor_label="care:field-visit")
    assert _counters(enrollment)["non_compliant"] == 0
    with pytest.raises(EnrollmentStateError):
        enrollment_mark_failed(enrollment=enrollment, actor_label="x")


def test_no_active_enrollment_before_the_batch_time(campaign, meter_factory, now):
    import datetime as dt

    meter = meter_factory.create()
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=1, scheduled_at=now + dt.timedelta(days=2))
    assert enrollment_for_meter(meter) is None


def test_a_notice_counted_after_the_codes_still_counts_as_notified(enrollment):
    """The gateway took the notice, then the customer bought (codes issued) before the outbox counted
    it (its worker was lost and the sweep adopted the send later): the customer was notified."""
    from campaigns.selectors import campaign_counters_recount
    from campaigns.services import notices_sent

    assert enrollment_mark_codes_issued(enrollment=enrollment, actor_label="partner:1") is True
    assert notices_sent(batch_id=enrollment.batch_id, meter_ids=[enrollment.meter_id]) == 1
    enrollment.refresh_from_db()
    assert enrollment.state == Enrollment.State.CODES_ISSUED and enrollment.notified_at is not None
    assert _counters(enrollment)["notified"] == 1
    assert campaign_counters_recount(campaign=enrollment.campaign)["notified"] == 1
    # Counted once: the same report again changes nothing.
    assert notices_sent(batch_id=enrollment.batch_id, meter_ids=[enrollment.meter_id]) == 0
    assert _counters(enrollment)["notified"] == 1
