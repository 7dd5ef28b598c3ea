"""A first `make run`: with the gateway and the web server up before the demo data is seeded, every
notice of the first batch is delivered on its first attempt and every care queue has work in it.

The real seed_demo command, the official SDK against the local gateway (which refuses the demo's
one unreachable number, as `make run` starts it), delivery reports posted back to a live server.
"""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from accounts.roles import roles_sync
from campaigns.models import Batch
from care.selectors import care_queues_count, meter_story_load
from care.status import desk_status
from meters.models import Meter
from sms.fake_gateway import DEMO_REFUSED_NUMBER
from sms.models import Message
from sms.services import messages_sweep


def _wait_delivered(notices, expected: int, timeout: float = 60) -> None:
    """Wait as `make run` does, its ticker sweeping now and then (a report that overtook its
    message's "sent" is applied by the sweep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if notices.filter(status=Message.Status.DELIVERED).count() == expected:
            return
        time.sleep(1.0)
        messages_sweep()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_seed_demo_delivers_every_notice_first_time_and_fills_every_care_queue(at_backend, live_server, settings):
    if connections["default"].vendor != "postgresql":
        # The live server writes delivery reports while the seed writes: SQLite's shared in-memory
        # test database locks whole tables (the demo's file database waits instead).
        pytest.skip("delivery reports into a live server need the PostgreSQL test database (CI runs it)")
    at_backend.config.callback_url = f"{live_server.url}/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
    at_backend.config.number_status[DEMO_REFUSED_NUMBER] = 406  # fake_africastalking --refuse-demo-number
    at_backend.config.dlr_delay = 0.5  # fake_africastalking's default
    settings.SMS_SEND_RATE = 0
    roles_sync()  # a transactional test starts from a flushed database
    out = io.StringIO()
    call_command("seed_demo", stdout=out)

    first = Batch.objects.order_by("scheduled_at").first()
    notices = Message.objects.filter(batch_id=first.pk, purpose=Message.Purpose.NOTICE)
    _wait_delivered(notices, first.enrolled)
    assert notices.count() == first.enrolled == 300
    assert notices.filter(status=Message.Status.DELIVERED, attempts=1).count() == 300  # none needed a retry
    first.refresh_from_db()
    assert first.status == Batch.Status.OPEN and first.notified == 300

    queues = care_queues_count(user=None)
    assert (queues.open_cases, queues.field_visits, queues.failing_sms) == (2, 1, 1)

    # The meters the care demo set up tell their story in plain words on the desk.
    lines = {}
    for number in ("54000000015", "54000000023", "54000000049", "54000000056", "54000000064"):
        lines[number] = desk_status(meter_story_load(Meter.objects.get(meter_number=number))).line
    assert "with a KES 200.00 purchase at Demo Bank; SMS delivered" in lines["54000000015"]
    assert "waiting for the customer to type them" in lines["54000000015"]
    assert "SMS failed (UserInBlacklist)" in lines["54000000049"]
    assert lines["54000000056"].startswith("Confirmed on the new key (revision 2)")
    assert "the customer on *977#" in lines["54000000056"]
    assert lines["54000000064"].startswith("Flagged for a field visit")

    text = out.getvalue()
    assert "Partner API: 'Demo Bank' key (shown once): kplc_" in text
    assert "/api/v1/meters/54000000015/" in text
    connections.close_all()


@pytest.mark.django_db
def test_a_second_seed_says_how_to_get_a_new_partner_key(meter_factory):
    meter_factory()
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "Demo data already loaded (1 meters)" in out.getvalue()
    assert "manage.py new_partner_key 'Demo Bank'" in out.getvalue()


@pytest.mark.django_db
def test_new_partner_key_gives_the_demo_bank_a_working_key():
    from partners.demo import DEMO_PARTNER
    from partners.services import partner_api_key_authenticate, partner_create

    partner_create(name=DEMO_PARTNER)
    out = io.StringIO()
    call_command("new_partner_key", DEMO_PARTNER, stdout=out)
    raw_key = out.getvalue().strip().splitlines()[-1]
    assert partner_api_key_authenticate(raw_key=raw_key).partner.name == DEMO_PARTNER
    with pytest.raises(CommandError, match="no partner named 'Nobody'"):
        call_command("new_partner_key", "Nobody")
