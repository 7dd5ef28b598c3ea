"""The outbox is a queue: settled messages move to the log, exactly, and every reader still finds them."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.roles import AUDITOR, CARE_AGENT
from care.selectors import care_queues_count, meter_story_load
from care.status import meter_timeline
from kplc_sts import clock
from sms.events import codes_delivered
from sms.models import DeliveryReport, Message, MessageLog
from sms.selectors import batch_status_counts, message_find, messages_of_meter
from sms.services import (
    delivery_report_receive,
    log_partitions,
    log_partitions_ensure,
    log_reports_apply,
    messages_log_settled,
    messages_sweep,
)
from tests.factories import sms_tally

pytestmark = pytest.mark.django_db
URL = "/sms/delivery-reports/{}/"
DAY = dt.timedelta(days=1)


def _message(meter=None, **fields) -> Message:
    defaults = {"recipient": "+254712000001", "body": "KPLC: hello", "purpose": "notice", "meter": meter}
    return Message.objects.create(**{**defaults, **fields})


@pytest.fixture
def outbox(meter_factory):
    """One message in each state, old enough to move if its state allows it, plus a fresh one."""
    meter = meter_factory(phone="+254712000001")
    old = clock.now() - 3 * DAY
    made = {
        "queued": _message(meter, status="queued", created_at=old),
        "held": _message(meter, status="held", created_at=old),
        "sending": _message(meter, status="sending", created_at=old, claimed_at=old),
        "sent_recent": _message(meter, status="sent", created_at=old, sent_at=clock.now(), sent_counted=True,
                                provider_message_id="ATX-recent"),
        "sent_unreported": _message(meter, status="sent", created_at=old, sent_at=old, sent_counted=True,
                                    provider_message_id="ATX-unreported"),
        "delivered_uncounted": _message(meter, status="delivered", created_at=old, sent_at=old, delivered_at=old,
                                        provider_message_id="ATX-uncounted"),
        "delivered": _message(meter, status="delivered", created_at=old, sent_at=old, delivered_at=old,
                              sent_counted=True, provider_message_id="ATX-delivered", cost="0.8000", currency="KES"),
        "delivered_now": _message(meter, status="delivered", created_at=old, sent_at=old, delivered_at=clock.now(),
                                  sent_counted=True, provider_message_id="ATX-now"),
        "failed": _message(meter, status="failed", created_at=old, delivered_at=old, failure_reason="MaxAttempts",
                           attempts=6),
        "rejected": _message(meter, status="rejected", created_at=old, delivered_at=old,
                             failure_reason="InvalidPhoneNumber"),
        "cancelled": _message(meter, status="cancelled", created_at=old, delivered_at=old,
                              failure_reason="BatchCancelled"),
    }  # fmt: skip
    return meter, made


MOVES = {"sent_unreported", "delivered", "failed", "rejected", "cancelled"}


def test_moving_settled_messages_is_exact_and_idempotent(outbox):
    meter, made = outbox
    before = {
        name: Message.objects.values().get(pk=message.pk) for name, message in made.items()
    }  # every column as written
    moved = messages_log_settled(chunk=2)  # several chunks: the loop ends on a short one
    assert moved == len(MOVES)
    assert set(Message.objects.values_list("pk", flat=True)) == {made[name].pk for name in set(made) - MOVES}
    assert set(MessageLog.objects.values_list("pk", flat=True)) == {made[name].pk for name in MOVES}
    for name in MOVES:
        logged = MessageLog.objects.values().get(pk=made[name].pk)
        assert logged.pop("logged_at") is not None
        assert logged == before[name], name  # row for row: same id, same columns
    # Again: nothing left to move, nothing doubled.
    assert messages_log_settled() == 0
    assert Message.objects.count() + MessageLog.objects.count() == len(made)
    # The uncounted one moves once the sweep has counted it.
    messages_sweep()
    assert messages_log_settled() == 1
    assert MessageLog.objects.filter(pk=made["delivered_uncounted"].pk).exists()


def test_readers_see_outbox_and_log_together(outbox):
    meter, made = outbox
    shown_before = [message.pk for message in messages_of_meter(meter_id=meter.pk)]
    queues_before = care_queues_count(user=None).failing_sms
    messages_log_settled()
    assert [message.pk for message in messages_of_meter(meter_id=meter.pk)] == shown_before
    assert queues_before == care_queues_count(user=None).failing_sms == 1  # failed + rejected: 2 >= threshold
    found = message_find(pk=made["failed"].pk)
    assert isinstance(found, MessageLog) and found.failure_reason == "MaxAttempts"
    assert isinstance(message_find(pk=made["queued"].pk), Message)


def test_the_care_timeline_still_shows_a_logged_sms(outbox, client, staff):
    meter, made = outbox
    messages_log_settled()
    story = meter_story_load(meter)
    assert made["failed"].pk in {message.pk for message in story.messages}
    titles = [entry.title for entry in meter_timeline(story)]
    assert any("failed (MaxAttempts)" in title for title in titles), titles
    assert any("refused by the network" in title for title in titles), titles
    # And on the meter page itself, the story's SMS table lists it.
    client.force_login(staff(CARE_AGENT))
    page = client.get(f"/admin/meters/meter/{meter.pk}/change/")
    assert page.status_code == 200
    assert "MaxAttempts" in page.content.decode()


def test_the_log_admin_lists_and_shows_a_logged_message(outbox, client, staff):
    meter, made = outbox
    messages_log_settled()
    client.force_login(staff(AUDITOR))
    listing = client.get("/admin/sms/messagelog/")
    assert listing.status_code == 200 and "MaxAttempts" in listing.content.decode()
    page = client.get(f"/admin/sms/messagelog/{made['failed'].pk}/change/")
    assert page.status_code == 200 and "KPLC: hello" in page.content.decode()


def test_a_late_delivery_report_settles_a_logged_message_once(client, settings, sent_notice):
    # No report within SMS_LOG_UNREPORTED_SECONDS: the message leaves the outbox as sent.
    later = clock.now() + dt.timedelta(seconds=settings.SMS_LOG_UNREPORTED_SECONDS + 60)
    assert messages_log_settled(now=later) == 1
    assert not Message.objects.filter(pk=sent_notice.pk).exists()
    batch_id = sent_notice.batch_id
    assert sms_tally_of(batch_id) == (1, 0, 0)
    form = {"id": sent_notice.provider_message_id, "status": "Success", "phoneNumber": sent_notice.recipient}
    url = URL.format(settings.SMS_DELIVERY_REPORT_SECRET)
    assert client.post(url, form).status_code == 200
    assert client.post(url, form).status_code == 200  # AT may post twice
    logged = MessageLog.objects.get(pk=sent_notice.pk)
    assert logged.status == "delivered" and logged.delivered_at is not None
    assert sms_tally_of(batch_id) == (1, 1, 0)
    assert DeliveryReport.objects.get(provider_message_id=sent_notice.provider_message_id).applied_at is not None
    assert batch_status_counts(batch_id=batch_id) == {"delivered": 1}


def test_a_report_for_a_logged_message_past_retention_looks_no_further_than_the_archive_cutoff(settings, sent_notice):
    # A month past SMS_LOG_MONTHS is the archive's: the report is stored, and neither the look in
    # the log nor log_reports_apply touches that month (the one-statement path bounds its probe
    # by the same cutoff that log_reports_apply uses).
    later = clock.now() + dt.timedelta(seconds=settings.SMS_LOG_UNREPORTED_SECONDS + 60)
    assert messages_log_settled(now=later) == 1
    past = clock.now() - dt.timedelta(days=31 * (settings.SMS_LOG_MONTHS + 1))
    MessageLog.objects.filter(pk=sent_notice.pk).update(created_at=past)
    with CaptureQueriesContext(connection) as captured:
        delivery_report_receive(provider_message_id=sent_notice.provider_message_id, status="Success")
    assert not [q["sql"] for q in captured.captured_queries if "FOR UPDATE" in q["sql"]], captured.captured_queries
    assert MessageLog.objects.get(pk=sent_notice.pk).status == "sent"
    assert sms_tally_of(sent_notice.batch_id) == (1, 0, 0)
    assert DeliveryReport.objects.get(provider_message_id=sent_notice.provider_message_id).applied_at is None
    # Within retention the same report settles it.
    MessageLog.objects.filter(pk=sent_notice.pk).update(created_at=clock.now())
    delivery_report_receive(provider_message_id=sent_notice.provider_message_id, status="Success")
    assert MessageLog.objects.get(pk=sent_notice.pk).status == "delivered"
    assert sms_tally_of(sent_notice.batch_id) == (1, 1, 0)


def test_the_sweep_applies_a_report_left_unapplied_for_a_logged_message(settings, sent_notice):
    later = clock.now() + dt.timedelta(seconds=settings.SMS_LOG_UNREPORTED_SECONDS + 60)
    messages_log_settled(now=later)
    # As if the report arrived while the message was on its way to the log and nobody applied it.
    DeliveryReport.objects.create(provider_message_id=sent_notice.provider_message_id, status="Failed",
                                  failure_reason="DeliveryFailure", phone_number=sent_notice.recipient)  # fmt: skip
    assert log_reports_apply(provider_message_ids=[]) == 0
    messages_sweep()
    logged = MessageLog.objects.get(pk=sent_notice.pk)
    assert (logged.status, logged.failure_reason) == ("failed", "DeliveryFailure")
    assert sms_tally_of(sent_notice.batch_id) == (1, 0, 1)
    assert log_reports_apply() == 0  # applied: not again
    assert sms_tally_of(sent_notice.batch_id) == (1, 0, 1)


def test_a_report_on_a_logged_message_is_no_orphan_for_a_stuck_one(settings, sent_notice):
    """The sweep adopts orphan reports (on no message) for messages stuck in sending; a report on
    a logged message must not be taken for one."""
    later = clock.now() + dt.timedelta(seconds=settings.SMS_LOG_UNREPORTED_SECONDS + 60)
    messages_log_settled(now=later)
    stuck_at = clock.now() - dt.timedelta(hours=1)
    stuck = _message(None, recipient=sent_notice.recipient, status="sending", claimed_at=stuck_at, purpose="codes")
    delivery_report_receive(
        provider_message_id=sent_notice.provider_message_id, status="Success", phone_number=sent_notice.recipient
    )
    messages_sweep()
    stuck.refresh_from_db()
    assert stuck.provider_message_id is None  # not adopted; queued again for a real send
    assert MessageLog.objects.get(pk=sent_notice.pk).status == "delivered"


def sms_tally_of(batch_id: int) -> tuple[int, int, int]:
    from campaigns.models import Batch

    return sms_tally(Batch.objects.get(pk=batch_id))


def test_partitions_are_made_ahead_and_take_what_the_default_caught(outbox):
    far = dt.datetime(2031, 11, 15, tzinfo=dt.UTC)
    if connection.vendor != "postgresql":
        assert log_partitions_ensure(now=far, months_ahead=2) == []  # SQLite: one plain table
        return
    # A message from a month no partition covers yet lands in DEFAULT, never refused.
    message = made_old = outbox[1]["delivered"]
    Message.objects.filter(pk=message.pk).update(created_at=far + dt.timedelta(days=20))
    messages_log_settled(now=far + 30 * DAY)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM sms_messagelog WHERE id = %s", [made_old.pk])
        assert cursor.fetchone()[0] == "sms_messagelog_default"
    made = log_partitions_ensure(now=far, months_ahead=2)
    assert made == ["sms_messagelog_203111", "sms_messagelog_203112", "sms_messagelog_203201"]
    assert log_partitions_ensure(now=far, months_ahead=2) == []  # once
    assert set(made) <= set(log_partitions()) and log_partitions()[-1] == "sms_messagelog_default"
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM sms_messagelog WHERE id = %s", [made_old.pk])
        assert cursor.fetchone()[0] == "sms_messagelog_203112"
    assert MessageLog.objects.filter(pk=made_old.pk).count() == 1


def test_the_partitions_command(capsys):
    call_command("sms_log_partitions", "--months", "1")
    out = capsys.readouterr().out.strip().splitlines()[-1]
    if connection.vendor == "postgresql":
        this_month = clock.now().strftime("%Y%m")
        assert f"sms_messagelog_{this_month}" in out and "sms_messagelog_default" in out
    else:
        assert out == "made: none; partitions: none"


@pytest.mark.django_db(transaction=True)
def test_a_mover_killed_mid_move_loses_and_doubles_nothing(outbox, tmp_path):
    """SIGKILL a process that has moved rows inside its transaction but not committed: the rows
    are all still in the outbox and none in the log; the next pass moves them exactly once."""
    if connection.vendor != "postgresql":
        pytest.skip("another process can only share a PostgreSQL test database")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "KPLC_VAR_DIR": str(tmp_path),
        "LOG_LEVEL": "WARNING",
    }
    script = (
        "import django, sys, time; django.setup()\n"
        "from django.db import transaction\n"
        "from sms.services import messages_log_settled\n"
        "with transaction.atomic():\n"
        "    print('moved', messages_log_settled(chunk=2), flush=True)\n"
        "    time.sleep(120)\n"
    )
    total = Message.objects.count()
    mover = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(django_settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = mover.stdout.readline() if mover.stdout else ""
        assert line.strip() == f"moved {len(MOVES)}", line
        os.killpg(mover.pid, signal.SIGKILL)
        mover.wait(20)
    finally:
        if mover.poll() is None:
            os.killpg(mover.pid, signal.SIGKILL)
    connection.close()  # a fresh snapshot, after the killed backend's rollback
    assert Message.objects.count() == total and MessageLog.objects.count() == 0
    assert messages_log_settled() == len(MOVES)
    assert Message.objects.count() + MessageLog.objects.count() == total
    outbox_ids = set(Message.objects.values_list("pk", flat=True))
    assert not outbox_ids & set(MessageLog.objects.values_list("pk", flat=True))


def test_a_report_that_beats_the_worker_is_stored_unapplied_and_waits(sent_notice):
    # The common race at speed: the gateway reports before the worker has committed the provider id.
    # The report is found neither in the outbox nor in the log: the report's statement stores it,
    # unapplied, and one look in the log (a statement of its own, so that a report whose message
    # the outbox holds never plans it) finds nothing; the sweep applies it once the id is known.
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement report is PostgreSQL's; SQLite takes the portable path")
    with CaptureQueriesContext(connection) as captured:
        delivery_report_receive(provider_message_id="ATX-not-yet-recorded", status="Success")
    # The test's own transaction wraps the report's in a savepoint; those are not the report's statements.
    statements = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == 2, statements
    assert statements[0].startswith("WITH known") and "sms_messagelog" not in statements[0], statements
    assert "sms_messagelog" in statements[1], statements
    report = DeliveryReport.objects.get(provider_message_id="ATX-not-yet-recorded")
    assert report.applied_at is None
    Message.objects.filter(pk=sent_notice.pk).update(provider_message_id="ATX-not-yet-recorded")
    messages_sweep()
    sent_notice.refresh_from_db()
    assert sent_notice.status == "delivered"


def test_a_delivered_notice_is_one_statement_outside_any_transaction(sent_notice):
    # Its own transaction (autocommit): no BEGIN/COMMIT round trips around it. Under the test's
    # wrapping transaction Django would open a savepoint for an atomic block: there is none.
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement report is PostgreSQL's; SQLite takes the portable path")
    with CaptureQueriesContext(connection) as captured:
        delivery_report_receive(provider_message_id=sent_notice.provider_message_id, status="Success")
    assert [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SAVEPOINT")] == []
    assert len(captured.captured_queries) == 1
    sent_notice.refresh_from_db()
    assert sent_notice.status == "delivered"
    assert sms_tally_of(sent_notice.batch_id) == (1, 1, 0)
    assert DeliveryReport.objects.get(provider_message_id=sent_notice.provider_message_id).applied_at is not None


def test_a_delivered_codes_sms_settles_once_in_a_transaction_with_its_bookkeeping(sent_notice):
    # The first statement spares a codes SMS (it must commit with the campaign's bookkeeping) and
    # says so; the second, in a transaction, settles it: one report row, one tally count.
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement report is PostgreSQL's; SQLite takes the portable path")
    Message.objects.filter(pk=sent_notice.pk).update(purpose=Message.Purpose.CODES)
    fired: list[tuple[list[int], bool]] = []

    def heard(sender, meter_ids, at, **kwargs):  # type: ignore[no-untyped-def]
        # In the settle's own atomic block: the campaign's bookkeeping commits (or not) with it.
        fired.append((list(meter_ids), connection.in_atomic_block and len(connection.savepoint_ids) > 0))

    codes_delivered.connect(heard, dispatch_uid="test-codes-delivered")
    try:
        with CaptureQueriesContext(connection) as captured:
            delivery_report_receive(provider_message_id=sent_notice.provider_message_id, status="Success")
        assert fired == [([sent_notice.meter_id], True)]
        delivery_report_receive(provider_message_id=sent_notice.provider_message_id, status="Success")
        assert len(fired) == 1  # the same report again: no second bookkeeping
    finally:
        codes_delivered.disconnect(dispatch_uid="test-codes-delivered")
    statements = [q["sql"] for q in captured.captured_queries]
    assert statements[1].startswith("SAVEPOINT"), statements  # the atomic block, inside the test's transaction
    assert len([sql for sql in statements if sql.startswith("WITH known")]) == 2
    sent_notice.refresh_from_db()
    assert sent_notice.status == "delivered"
    assert sms_tally_of(sent_notice.batch_id) == (1, 1, 0)
    assert DeliveryReport.objects.filter(provider_message_id=sent_notice.provider_message_id).count() == 1
    # The same report again changes nothing.
    delivery_report_receive(provider_message_id=sent_notice.provider_message_id, status="Success")
    assert sms_tally_of(sent_notice.batch_id) == (1, 1, 0)
