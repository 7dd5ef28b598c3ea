"""A batch from scheduling to notices, in-process (eager tasks, the in-memory SMS backend)."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.models import Batch, CampaignDailyStat, Enrollment
from campaigns.services import (
    batch_cancel,
    batch_notices_create,
    batch_pause,
    batch_resume,
    batch_schedule,
    batches_start_due,
)
from sms.backends.memory import MemoryBackend
from sms.models import Message
from sms.services import messages_send, messages_sweep
from tests.factories import sms_tally

pytestmark = pytest.mark.django_db


def test_a_due_batch_sends_one_notice_to_each_enrolled_customer(campaign, meter_factory, now):
    meters = meter_factory.create_batch(6)
    meter_factory.create(phone="")  # enrolled, but no phone: no notice
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=10, scheduled_at=now)
    meter_factory.create()
    later = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=10, scheduled_at=now + dt.timedelta(days=1))

    assert batches_start_due() == [batch.pk]
    assert batches_start_due() == []  # a second tick starts nothing twice

    recipients = sorted(sms.recipient for sms in MemoryBackend.outbox)
    assert recipients == sorted(m.phone for m in meters)
    bodies = {sms.recipient: sms.body for sms in MemoryBackend.outbox}
    assert all(m.meter_number in bodies[m.phone] for m in meters)
    assert Message.objects.filter(purpose="notice", status="sent").count() == 6
    batch.refresh_from_db()
    assert (batch.enrolled, batch.notified, sms_tally(batch)[0], batch.notices_created) == (7, 6, 6, 6)
    assert Enrollment.objects.filter(state="notified").count() == 6
    assert sum(CampaignDailyStat.objects.values_list("notices_sent", flat=True)) == 6
    messages_sweep()
    batch.refresh_from_db()
    later.refresh_from_db()
    assert batch.status == Batch.Status.OPEN
    assert later.status == Batch.Status.SCHEDULED and later.notices_created_at is None


def test_pause_stops_unsent_notices_and_resume_continues(
    campaign, meter_factory, now, django_capture_on_commit_callbacks
):
    meter_factory.create_batch(5)
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=5, scheduled_at=now)
    assert batch_notices_create(batch=batch) == 5  # written, not yet handed to workers
    ids = list(Message.objects.order_by("pk").values_list("pk", flat=True))
    messages_send(ids=ids[:2], queue="sms_notices")
    batch_pause(batch=batch, actor_label="mgr")

    messages_send(ids=ids, queue="sms_notices")  # a worker picks up the rest: it must not send
    messages_sweep()
    assert len(MemoryBackend.outbox) == 2
    assert Message.objects.filter(status="held").count() == 3  # held while the batch is paused

    with django_capture_on_commit_callbacks(execute=True):
        batch_resume(batch=batch, actor_label="mgr")  # eager tasks: the re-dispatch sends at once
    assert len(MemoryBackend.outbox) == 5
    assert len({sms.recipient for sms in MemoryBackend.outbox}) == 5


def test_cancel_stops_unsent_notices_and_releases_unnotified_meters(campaign, meter_factory, now):
    meter_factory.create_batch(4)
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=4, scheduled_at=now)
    batch_notices_create(batch=batch)
    first = Message.objects.order_by("pk").first()
    messages_send(ids=[first.pk], queue="sms_notices")

    batch_cancel(batch=batch, actor_label="mgr")
    messages_sweep()

    assert len(MemoryBackend.outbox) == 1
    assert Message.objects.filter(status="cancelled").count() == 3
    assert Enrollment.objects.count() == 1  # the notified customer keeps the enrollment
    batch.refresh_from_db()
    campaign.refresh_from_db()
    assert (batch.enrolled, campaign.enrolled) == (1, 1)
    assert CampaignDailyStat.objects.get().scheduled == 1
    # The released meters can go in a new batch.
    again = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=10, scheduled_at=now)
    assert again.enrolled == 3


def test_a_batch_records_when_its_notices_were_written_not_when_its_start_began(
    campaign, meter_factory, now, monkeypatch
):
    """A meter updated while the start was under way (before the INSERT read the enrollments) gets
    no notice; the batch's notices_created_at must be late enough to say so."""
    from campaigns.services import batches as batches_module

    meter_factory.create_batch(3)
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=now)
    clock_at = {"now": now}
    monkeypatch.setattr(batches_module.clock, "now", lambda: clock_at["now"])
    real_insert = batches_module.sms.notices_insert_from

    def insert_taking_five_minutes(**kwargs):
        written = real_insert(**kwargs)
        clock_at["now"] = now + dt.timedelta(minutes=5)
        return written

    monkeypatch.setattr(batches_module.sms, "notices_insert_from", insert_taking_five_minutes)
    assert batch_notices_create(batch=batch, now=now) == 3
    batch.refresh_from_db()
    assert batch.started_at == now
    assert batch.notices_created_at == now + dt.timedelta(minutes=5)
