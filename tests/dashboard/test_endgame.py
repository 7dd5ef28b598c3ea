"""The endgame screens without a browser: who is left against a recount, its CSV, the plan-aware
projection from a known response, and who may do what."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Batch, Campaign, Enrollment, ReminderRule
from campaigns.services import (
    batch_schedule,
    campaign_create,
    meter_mark_codes_issued,
    meter_mark_non_compliant,
    notices_sent,
)
from dashboard import services
from dashboard.services import curve_share
from kplc_sts import clock

pytestmark = pytest.mark.django_db
State = Enrollment.State


def _batch(campaign: Campaign, meters, *, notify=True, at=None) -> Batch:
    batch = batch_schedule(
        campaign=campaign, regions=[], sgcs=[], limit=len(meters), scheduled_at=at or clock.now(), actor_label="t"
    )
    # batch_schedule takes any not-yet-enrolled meters; these tests enroll exactly the ones given.
    assert set(Enrollment.objects.filter(batch=batch).values_list("meter_id", flat=True)) == {m.pk for m in meters}
    if notify:
        notices_sent(batch_id=batch.pk, meter_ids=[m.pk for m in meters])
    return batch


def _recount_by_state(campaign: Campaign) -> dict[tuple[str, str], int]:
    """The who-is-left table computed another way: each enrollment classified in Python."""
    counts: dict[tuple[str, str], int] = {}
    for e in Enrollment.objects.filter(campaign=campaign).select_related("meter", "batch"):
        if e.state == State.SCHEDULED and e.notified_at is None and e.batch.status in ("open", "closed"):
            key = "bad_phone"
        elif e.state == State.NOTIFIED:
            key = "pushed" if e.codes_pushed_at is not None else "no_purchase"
        elif e.state == State.CODES_ISSUED and e.inferred_at is None:
            key = "not_typed"
        elif e.state == State.FAILED:
            key = "rejected"
        elif e.state == State.NON_COMPLIANT:
            key = "non_compliant"
        else:
            continue
        counts[(e.meter.region, key)] = counts.get((e.meter.region, key), 0) + 1
    return counts


def test_who_is_left_counts_equal_a_recount_and_the_csv_lists_them(client, manager, campaign, meter_factory):
    nairobi = meter_factory.create_batch(4, region="Nairobi")
    mombasa = meter_factory.create_batch(3, region="Mombasa", customer_name="=HYPERLINK(1)")
    bad = meter_factory(region="Mombasa", phone="0000")
    batch = _batch(campaign, [*nairobi, *mombasa, bad], notify=False)
    notices_sent(batch_id=batch.pk, meter_ids=[m.pk for m in [*nairobi, *mombasa]])
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.OPEN)  # its notices are out (one refused)
    meter_mark_codes_issued(meter=nairobi[0], campaign=campaign, origin="batch", actor_label="t")
    meter_mark_codes_issued(meter=nairobi[1], campaign=campaign, origin="batch", actor_label="t")
    meter_mark_non_compliant(meter=mombasa[0], origin="care", actor_label="t", reason="old meter")

    left = services.campaign_left(campaign=campaign)
    shown = {(r.region, key): n for r in left.regions for key, n in r.counts.items() if n}
    assert shown == _recount_by_state(campaign)
    assert shown == {
        ("Nairobi", "not_typed"): 2,
        ("Nairobi", "no_purchase"): 2,
        ("Mombasa", "no_purchase"): 2,
        ("Mombasa", "non_compliant"): 1,
        ("Mombasa", "bad_phone"): 1,
    }

    client.force_login(manager)
    page = client.get(reverse("dashboard:who_is_left", args=[campaign.pk]))
    assert page.status_code == 200
    assert b'data-reason="no_purchase"' in page.content and b"Send the codes without a purchase" in page.content

    response = client.get(
        reverse("dashboard:who_is_left_csv", args=[campaign.pk]) + "?reason=no_purchase&region=Mombasa"
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:6] == ["meter_number", "customer_name", "phone", "region", "sgc", "reason"]
    assert sorted(r[0] for r in rows[1:]) == sorted(m.meter_number for m in mombasa[1:])
    assert {r[5] for r in rows[1:]} == {"Notified, no purchase"}
    assert {r[1] for r in rows[1:]} == {"'=HYPERLINK(1)"}  # neutralised for spreadsheets
    assert client.get(reverse("dashboard:who_is_left_csv", args=[campaign.pk]) + "?reason=nope").status_code == 404


def test_the_curve_is_straight_between_points_and_flat_after_the_last():
    curve = {1: 0.5, 3: 0.7, 7: None, 14: None}
    assert curve_share(curve, 0) == 0.0
    assert curve_share(curve, 0.5) == pytest.approx(0.25)
    assert curve_share(curve, 2) == pytest.approx(0.6)
    assert curve_share(curve, 30) == pytest.approx(0.7)


def test_the_projection_uses_the_response_curve_and_the_batches_still_to_come(meter_factory):
    start = timezone.make_aware(dt.datetime(2024, 7, 1, 9, 0))
    with time_machine.travel(start, tick=False) as traveller:
        campaign = campaign_create(
            name="Plan",
            sgcs=["600675"],
            from_krn=1,
            to_krn=2,
            deadline=dt.date(2024, 7, 31),
            daily_capacity=1000,
            actor_label="t",
        )
        nairobi = meter_factory.create_batch(10, region="Nairobi")
        _batch(campaign, nairobi)
        traveller.shift(dt.timedelta(hours=12))
        for meter in nairobi[:5]:
            meter_mark_codes_issued(meter=meter, campaign=campaign, origin="batch", actor_label="t")
        traveller.shift(dt.timedelta(days=1, hours=12))
        for meter in nairobi[5:7]:
            meter_mark_codes_issued(meter=meter, campaign=campaign, origin="batch", actor_label="t")
        traveller.shift(dt.timedelta(days=8))  # ten days after the notice
        mombasa = meter_factory.create_batch(10, region="Mombasa")
        _batch(campaign, mombasa, notify=False, at=clock.now() + dt.timedelta(days=2))
        campaign.refresh_from_db()
        plan = services.campaign_plan_projection(campaign=campaign, target=20, now=clock.now())

    # Observed: 5 of 10 within a day, 7 within 3 and 7 days; nobody notified 14 days ago yet.
    assert plan.curve == {1: 0.5, 3: 0.7, 7: 0.7, 14: None}
    assert (plan.done, plan.expected_open, plan.expected_scheduled) == (7, 0, 7)
    assert plan.projected == 14 and plan.short == 6
    by_region = {r.region: r for r in plan.regions}
    assert (by_region["Nairobi"].projected, by_region["Mombasa"].projected) == (7, 7)
    assert {r.region for r in plan.missing_regions} == {"Nairobi", "Mombasa"}


def test_only_managers_push_and_change_the_reminder_rule(client, staff, campaign):
    from accounts.roles import AUDITOR, CARE_AGENT

    push = reverse("dashboard:codes_push", args=[campaign.pk])
    rule = reverse("dashboard:reminder_rule", args=[campaign.pk])
    for role in (CARE_AGENT, AUDITOR):
        client.force_login(staff(role, username=role.replace(" ", "").lower()))
        assert client.get(reverse("dashboard:who_is_left", args=[campaign.pk])).status_code == 200
        assert client.get(push).status_code == 403
        assert client.post(push, {"notified_days": "0", "action": "confirm"}).status_code == 403
        forbidden = client.post(rule, {"enabled": "on", "notified_days": "1", "codes_days": "1", "max_per_meter": "1"})
        assert forbidden.status_code == 403
        assert b"Campaign manager" in forbidden.content
    assert not ReminderRule.objects.exists()
