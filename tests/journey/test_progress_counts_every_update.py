"""Past the rollover, every update counts, whatever the channel and whether or not a batch got there.

A meter bought at the till before its batch opened, one in no batch at all, one confirmed on
*977#, one flagged by the care desk outside any enrollment: after each step the manager's overview
(funnel and "still to update") counts all of them and equals a recount from the rows, the segment
aggregates the schedule preview reads equal a full recount, and when the later batch starts it
writes notices only to its meters that still need one. Every step goes through the interface a
person or partner uses: the partner API, the USSD callback, the care desk's button, the dashboard.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.roles import CAMPAIGN_MANAGER, CARE_AGENT
from campaigns import selectors
from campaigns.models import Campaign, CampaignDailyStat, Enrollment
from campaigns.services import (
    batch_schedule,
    batches_start_due,
    campaign_create,
    campaign_target_refresh,
    meter_segments_refresh,
)
from meters.models import Meter
from sms.models import Message
from tests.factories import MeterFactory
from tests.vending.factories import SGC, load_vending_keys, make_partner

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the journey runs on PostgreSQL, the production database"
    ),
]

NAIROBI = ZoneInfo("Africa/Nairobi")
PAST_ROLLOVER = dt.datetime(2025, 3, 3, 9, 0, tzinfo=NAIROBI)


def _assert_counts_are_the_rows(campaign: Campaign, manager: Client) -> dict[str, int]:
    """The overview's figures, after checking them and the aggregates against recounts."""
    live, recount = (
        selectors.campaign_counters_live(campaign=campaign),
        selectors.campaign_counters_recount(campaign=campaign),
    )
    assert live == recount
    daily = {
        row.day: {"codes_issued": row.codes_issued, "confirmed": row.confirmed, "done": row.done, "failed": row.failed}
        for row in CampaignDailyStat.objects.filter(campaign=campaign)
        if row.codes_issued or row.confirmed or row.done or row.failed
    }
    assert daily == selectors.campaign_daily_recount(campaign=campaign)
    assert selectors.segments_live_counts() == selectors.segments_recount()
    data = manager.get(reverse("dashboard:overview_data", args=[campaign.pk])).json()
    funnel = {stage["key"]: stage["value"] for stage in data["funnel"]}
    target = Meter.objects.filter(sgc=SGC, krn=1).exclude(status=Meter.Status.RETIRED).count()
    assert funnel["target"] == target
    assert data["projection"]["remaining"] == target - recount["done"]
    for key in ("codes_issued", "confirmed", "non_compliant", "outside_batch"):
        assert funnel[key] == recount[key], key
    return {**funnel, "remaining": data["projection"]["remaining"]}


def _ussd(client: Client, phone: str, text: str, session: str) -> str:
    body = {"sessionId": session, "serviceCode": "*977#", "phoneNumber": phone, "networkCode": "63902", "text": text}
    response = client.post("/ussd/", body)
    assert response.status_code == 200
    return response.content.decode()


def test_every_update_counts_and_the_later_batch_notifies_only_who_still_needs_it(staff) -> None:
    with time_machine.travel(PAST_ROLLOVER, tick=True):
        load_vending_keys()
        meters = [MeterFactory(sgc=SGC, krn=1, region="Nairobi") for _ in range(10)]
        meter_segments_refresh()
        campaign = campaign_create(
            name="Endgame",
            sgcs=[SGC],
            from_krn=1,
            to_krn=2,
            deadline=dt.date(2025, 4, 30),
            daily_capacity=1000,
            actor_label="test",
        )
        campaign_target_refresh(campaign=campaign)
        batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=2, scheduled_at=PAST_ROLLOVER)
        later = batch_schedule(
            campaign=campaign, regions=[], sgcs=[], limit=4, scheduled_at=PAST_ROLLOVER + dt.timedelta(days=2)
        )
        batches_start_due()
        in_later = [e.meter for e in Enrollment.objects.filter(batch=later).select_related("meter").order_by("pk")]
        in_none = [m for m in meters if not Enrollment.objects.filter(meter=m).exists()]
        assert len(in_later) == 4 and len(in_none) == 4

        manager = Client()
        manager.force_login(staff(CAMPAIGN_MANAGER, "manager"))
        _partner, api_key = make_partner()
        partner = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
        before = _assert_counts_are_the_rows(campaign, manager)
        assert (before["codes_issued"], before["remaining"]) == (0, 10)

        # A meter whose batch has not started buys at the till: past the rollover it gets the codes.
        early = in_later[0]
        sale = partner.post(
            "/api/v1/vends/",
            {"meter_number": early.meter_number, "amount": "200.00", "reference": "EARLY-1"},
            content_type="application/json",
        )
        assert sale.status_code == 201 and sale.json()["key_change"] is True
        assert Enrollment.objects.get(meter=early).state == Enrollment.State.CODES_ISSUED
        step = _assert_counts_are_the_rows(campaign, manager)
        assert (step["codes_issued"], step["remaining"]) == (1, 9)

        # A meter in no batch at all buys: the update is recorded for the campaign, outside a batch.
        stray = in_none[0]
        sale = partner.post(
            "/api/v1/vends/",
            {"meter_number": stray.meter_number, "amount": "200.00", "reference": "STRAY-1"},
            content_type="application/json",
        )
        assert sale.status_code == 201 and sale.json()["key_change"] is True
        recorded = Enrollment.objects.get(meter=stray)
        assert (recorded.batch_id, recorded.origin, recorded.state) == (None, "till", "codes_issued")
        step = _assert_counts_are_the_rows(campaign, manager)
        assert (step["codes_issued"], step["outside_batch"], step["remaining"]) == (2, 1, 8)

        # The early buyer typed the codes and confirms on *977# from the registered phone.
        ussd = Client()
        assert _ussd(ussd, early.phone, f"3*{early.meter_number}*1", "s-confirm").startswith("END ")
        assert Enrollment.objects.get(meter=early).state == Enrollment.State.CONFIRMED
        step = _assert_counts_are_the_rows(campaign, manager)
        assert (step["confirmed"], step["remaining"]) == (1, 8)

        # The care desk flags a meter in no batch for a field visit, by its button on the meter page.
        flagged = in_none[1]
        agent = Client()
        agent.force_login(staff(CARE_AGENT, "agent"))
        url = reverse("admin:meters_meter_care", args=[flagged.pk, "flag"])
        assert agent.post(url, {"reason": "meter display broken"}).status_code == 302
        flagged.refresh_from_db()
        assert (flagged.status, flagged.key_state) == (Meter.Status.NON_COMPLIANT, Meter.KeyState.NON_COMPLIANT)
        recorded = Enrollment.objects.get(meter=flagged)
        assert (recorded.batch_id, recorded.origin, recorded.state) == (None, "care", "non_compliant")
        step = _assert_counts_are_the_rows(campaign, manager)
        assert (step["non_compliant"], step["outside_batch"], step["remaining"]) == (1, 2, 7)

        # The care desk marks a meter in no batch confirmed (a technician reports it took the codes).
        url = reverse("admin:meters_meter_care", args=[in_none[2].pk, "confirm"])
        assert agent.post(url).status_code == 302
        recorded = Enrollment.objects.get(meter=in_none[2])
        assert (recorded.batch_id, recorded.origin, recorded.state) == (None, "care", "confirmed")
        step = _assert_counts_are_the_rows(campaign, manager)
        assert (step["confirmed"], step["outside_batch"], step["remaining"]) == (2, 3, 6)

    with time_machine.travel(PAST_ROLLOVER + dt.timedelta(days=2, minutes=1), tick=True):
        manager.force_login(User.objects.get(username="manager"))  # two days on: the idle session ended
        assert later.pk in batches_start_due()
        notified = set(Message.objects.filter(batch_id=later.pk, purpose="notice").values_list("meter_id", flat=True))
        assert notified == {meter.pk for meter in in_later[1:]}  # not the early buyer, who is confirmed
        assert Enrollment.objects.get(meter=early).state == Enrollment.State.CONFIRMED
        after = _assert_counts_are_the_rows(campaign, manager)
        assert after["remaining"] == 6

        # And a new batch never enrolls the meters updated outside one.
        extra = batch_schedule(
            campaign=campaign, regions=[], sgcs=[], limit=100, scheduled_at=PAST_ROLLOVER + dt.timedelta(days=3)
        )
        enrolled = set(Enrollment.objects.filter(batch=extra).values_list("meter_id", flat=True))
        assert enrolled == {in_none[3].pk}
        _assert_counts_are_the_rows(campaign, manager)
