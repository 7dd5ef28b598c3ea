"""The desk's first line about a meter and the agent's next step, for each place a meter can be; and
the front door's one search."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.roles import CARE_AGENT
from campaigns.services import batch_notices_create
from care.selectors import care_queues_count, meter_story_load
from care.services import meter_codes_send, meter_confirm, meter_flag_non_compliant
from care.status import actor_display, desk_status, meter_timeline
from meters.models import Meter
from sms.models import Message
from sms.services import messages_send
from tests.care.factories import enroll, make_meter, vend

pytestmark = pytest.mark.django_db


def status(meter: Meter):
    meter.refresh_from_db()
    return desk_status(meter_story_load(meter))


def test_a_meter_not_in_any_batch(campaign):
    said = status(make_meter())
    assert said.line == "Not in an update batch yet: the meter is still on key revision 1."
    assert said.next_step.startswith("Nothing to type now") and said.tone == "wait"


def test_a_scheduled_meter_and_then_its_notice(campaign):
    meter = make_meter()
    batch = enroll(campaign, meter)
    assert status(meter).line.startswith("Scheduled in batch 1: the notice SMS goes out ")
    batch_notices_create(batch=batch)
    messages_send(ids=list(Message.objects.values_list("pk", flat=True)), queue="sms_notices")
    said = status(meter)
    assert (
        said.line.startswith("Notice SMS sent ") and "(batch 1); update codes 1 and 2 come with the next" in said.line
    )
    assert "load all unused tokens now" in said.next_step


def test_codes_bought_and_their_sms_then_a_failing_phone(campaign, partner):
    meter = make_meter()
    enroll(campaign, meter)
    vend(partner, meter, amount="200")
    said = status(meter)
    assert said.line.startswith("Update codes issued ")
    assert "with a KES 200.00 purchase at Test Bank; SMS queued " in said.line  # sent after commit
    assert said.line.endswith("waiting for the customer to type them.")
    Message.objects.filter(meter=meter, purpose="codes").update(status="delivered", delivered_at=timezone.now())
    assert "; SMS delivered " in status(meter).line
    Message.objects.filter(meter=meter, purpose="codes").update(status="rejected", failure_reason="UserInBlacklist")
    said = status(meter)
    assert "SMS failed (UserInBlacklist)" in said.line and said.tone == "bad"
    assert said.next_step.startswith("The codes SMS did not arrive: check the phone number")


def test_confirmed_on_ussd_and_flagged_for_a_visit(campaign, partner):
    meter = make_meter()
    enroll(campaign, meter)
    vend(partner, meter)
    meter_confirm(meter=meter, origin="ussd", actor_label=f"ussd:{meter.phone}", reason="ok")
    said = status(meter)
    assert said.line.startswith("Confirmed on the new key (revision 2) ")
    assert said.line.endswith(f"by the customer on *977# ({meter.phone}).") and said.tone == "ok"

    other = make_meter()
    meter_flag_non_compliant(meter=other, reason="old model", actor_label="user:agent")
    said = status(other)
    assert said.line.startswith("Flagged for a field visit ") and said.line.endswith(
        ": old model. The meter cannot take update codes."
    )
    assert "do not send codes" in said.next_step


def test_a_blocked_meter_is_said_first():
    said = status(make_meter(status=Meter.Status.BLOCKED))
    assert said.line == "Meter blocked in the register: no token can be sold for it." and said.tone == "bad"


def test_the_timeline_is_in_order_and_names_people_one_way(campaign, partner):
    meter = make_meter()
    enroll(campaign, meter)
    vend(partner, meter)
    meter.refresh_from_db()
    meter_codes_send(meter=meter, actor_label="user:agent")
    entries = meter_timeline(meter_story_load(meter))
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    titles = [e.title for e in entries]
    assert titles[0].startswith("Scheduled in batch 1") and "Update codes re-sent by SMS" in titles
    assert any(title.startswith("Bought KES 500.00 at Test Bank") for title in titles)
    issued = next(e for e in entries if e.title == "Update codes 1 and 2 issued")
    assert issued.detail == "by Test Bank"  # partner:<id> named as the meter's records call it
    assert actor_display("user:agent") == "agent" and actor_display("system") == "system"


def _agent() -> Client:
    user = User.objects.create_user("desk_agent", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=CARE_AGENT))
    client = Client()
    client.force_login(user)
    return client


def test_the_front_door_search_opens_one_meter_lists_several_and_says_when_none(campaign):
    first = make_meter(phone="+254712345678")
    make_meter(phone="+254799000111")
    client = _agent()
    find = reverse("admin:meters_meter_find")
    one = client.get(find, {"q": first.meter_number})
    assert one.status_code == 302 and one.url == reverse("admin:meters_meter_change", args=[first.pk])
    assert client.get(find, {"q": "0712 345 678"}).url == one.url  # the phone as the customer says it
    make_meter(phone="+254712345678")  # a second meter on that phone
    several = client.get(find, {"q": "+254 712 345 678"})
    assert several.url.startswith(reverse("admin:meters_meter_changelist") + "?q=")
    none = client.get(find, {"q": "54999999999"}, follow=True)
    assert "No meter matches “54999999999”" in none.content.decode()
    home = client.get(reverse("admin:index")).content.decode()
    assert 'id="find-customer"' in home and 'data-queue="failing-sms"' in home


def test_the_queue_counts_match_the_rows(campaign, partner):
    meters = [make_meter() for _ in range(3)]
    for meter in meters:
        enroll(campaign, meter)
    meter_flag_non_compliant(meter=meters[0], reason="x", actor_label="t")
    Message.objects.create(meter=meters[1], recipient="+254700000406", body="x", purpose="codes", status="failed")
    Message.objects.create(meter=meters[1], recipient="+254700000406", body="x", purpose="codes", status="rejected")
    Message.objects.create(meter=meters[2], recipient="+254700000407", body="x", purpose="codes", status="failed")
    queues = care_queues_count(user=None)
    assert (queues.field_visits, queues.failing_sms, queues.open_cases) == (1, 1, 0)
