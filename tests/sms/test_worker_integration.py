"""A real Celery worker process, the real Redis broker, the real africastalking SDK against the
local gateway, and delivery reports posted back to a live server. PostgreSQL only (the worker
process must share the test database).

The worker gets the test database's name through DATABASE_URL: pytest-django's test database
exists only while the test runs, so it is read from the live connection, not guessed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Count

from campaigns.models import Batch, Campaign, CampaignDailyStat, Enrollment, EnrollmentEvent
from campaigns.services import batch_schedule, batches_start_due, campaign_create
from sms.models import Message
from sms.services import messages_sweep
from tests.factories import campaign_sms_tally, sms_tally
from tests.support import REDIS_URL, database_others_end, needs_postgres_and_redis, process_group_stop

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(django_settings.BASE_DIR)
QUEUES = ("sms_notices", "sms_codes")


@pytest.fixture(autouse=True)
def _requirements():
    needs_postgres_and_redis("a worker process can only share a PostgreSQL test database")


def _reset_pools(app) -> None:
    # Celery caches the connection pool and a producer pool built on it; drop both so the
    # next publish connects with the broker_url in force now. Never close them: kombu keeps the
    # producer pool in a process-wide registry and would hand the closed one to the next test.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(settings):
    """Make this test process publish to the real broker instead of running tasks eagerly."""
    from kplc_sts.celery import app

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*QUEUES)
    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    app.conf.update(task_always_eager=False, broker_url=REDIS_URL)
    _reset_pools(app)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = REDIS_URL
    yield client
    app.conf.update(**saved)
    _reset_pools(app)
    client.delete(*QUEUES)


@pytest.fixture
def gateway(fake_gateway, live_server, settings):
    fake_gateway.config.callback_url = f"{live_server.url}/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
    fake_gateway.config.dlr_delay = 0.05
    return fake_gateway


@pytest.fixture
def start_worker(gateway, broker, tmp_path):
    """start_worker(concurrency=2) -> Popen of a `celery worker` in its own process group."""
    started: list[subprocess.Popen] = []
    db = connection.settings_dict

    def start(concurrency: int = 2) -> subprocess.Popen:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("KPLC_WORKER_SETTINGS", "kplc_sts.settings.base"),
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CELERY_BROKER_URL": REDIS_URL,
            "SMS_BACKEND": "sms.backends.africastalking.AfricasTalkingBackend",
            "AT_API_URL": gateway.url,
            "AT_API_KEY": "test-key",
            "AT_USERNAME": "kplc",
            "SMS_SEND_RATE": "300",
            "SMS_RATE_REDIS_URL": REDIS_URL,
            "SMS_RETRY_BASE_SECONDS": "0.2",
            "SMS_RETRY_MAX_SECONDS": "1",
            "SMS_MAX_ATTEMPTS": "15",
            "KPLC_VAR_DIR": str(tmp_path),
            "LOG_LEVEL": "WARNING",
        }
        if db.get("PASSWORD"):
            env["PGPASSWORD"] = db["PASSWORD"]
        log = tmp_path / f"worker-{len(started)}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kplc_sts",
                "worker",
                "-Q",
                ",".join(QUEUES),
                "-c",
                str(concurrency),
                "-P",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"camp-test-{uuid.uuid4().hex[:8]}@%h",
                "-l",
                "INFO",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log = log  # type: ignore[attr-defined]
        started.append(process)
        deadline = time.monotonic() + 90
        while "ready." not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the worker did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        return process

    yield start
    for process in started:
        process_group_stop(process)
    gateway.stop()  # no report may land after this: the database is flushed next
    database_others_end()


def _wait_until_settled(batch: Batch, *, expected: int, timeout: float = 240) -> None:
    """Poll like beat would: run the sweep every couple of seconds until every notice is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Message.objects.filter(batch_id=batch.pk, status__in=["delivered", "failed", "rejected"]).count()
        if done == expected:
            messages_sweep()  # opens the batch
            return
        time.sleep(1.5)
        messages_sweep()
    statuses = Counter(Message.objects.filter(batch_id=batch.pk).values_list("status", flat=True))
    raise AssertionError(f"batch {batch.number} did not settle: {statuses}")


def _campaign(meter_factory, meters: int) -> Campaign:
    meter_factory.create_batch(meters)
    import datetime as dt

    return campaign_create(
        name="Integration",
        sgcs=["600675"],
        from_krn=1,
        to_krn=2,
        deadline=dt.date(2030, 8, 31),
        daily_capacity=100_000,
    )


def _send_batch(campaign: Campaign, size: int) -> Batch:
    from django.utils import timezone

    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=size, scheduled_at=timezone.now())
    assert batches_start_due() == [batch.pk]
    return batch


def _assert_exactly_one_notice_each(batch: Batch, gateway, size: int) -> None:
    per_meter = Message.objects.filter(batch_id=batch.pk, purpose="notice").values("meter").annotate(n=Count("id"))
    assert len(per_meter) == size and {row["n"] for row in per_meter} == {1}
    assert Message.objects.filter(batch_id=batch.pk).exclude(status="delivered").count() == 0
    numbers = set(Message.objects.filter(batch_id=batch.pk).values_list("recipient", flat=True))
    accepted = Counter(record.number for record in gateway.sent if record.number in numbers)
    assert len(accepted) == size and set(accepted.values()) == {1}, "a customer got a second notice"
    batch.refresh_from_db()
    assert (batch.enrolled, batch.notified, *sms_tally(batch)) == (size, size, size, size, 0)
    assert batch.status == Batch.Status.OPEN
    assert Enrollment.objects.filter(batch=batch, state="notified").count() == size
    assert EnrollmentEvent.objects.filter(enrollment__batch=batch, to_state="notified").count() == size


def test_a_real_worker_sends_every_notice_exactly_once_even_through_failures(meter_factory, gateway, start_worker):
    campaign = _campaign(meter_factory, 600)
    start_worker(concurrency=2)

    first = _send_batch(campaign, 300)
    _wait_until_settled(first, expected=300)
    _assert_exactly_one_notice_each(first, gateway, 300)
    assert sum(gateway.failures.values()) == 0

    # 30 % of requests now fail transiently (half HTTP 500, half statusCode 500).
    gateway.config.fail_rate = 0.3
    second = _send_batch(campaign, 300)
    _wait_until_settled(second, expected=300)
    _assert_exactly_one_notice_each(second, gateway, 300)
    assert sum(gateway.failures.values()) > 30
    assert Message.objects.filter(batch_id=second.pk, attempts__gt=1).count() > 30

    campaign.refresh_from_db()
    assert (campaign.enrolled, campaign.notified, *campaign_sms_tally(campaign)[:2]) == (600, 600, 600, 600)
    assert sum(CampaignDailyStat.objects.filter(campaign=campaign).values_list("notices_sent", flat=True)) == 600


def test_a_worker_killed_mid_batch_is_finished_by_the_sweep_without_duplicates(
    meter_factory, gateway, start_worker, settings
):
    # The sweep (run here, in the test process) re-sends a stuck message only after the grace
    # period without a delivery report for its number; the gateway reports 0.05 s after accepting.
    settings.SMS_SENDING_STALE_SECONDS = 3
    settings.SMS_DLR_GRACE_SECONDS = 8
    campaign = _campaign(meter_factory, 400)
    gateway.config.slow_rate, gateway.config.slow_seconds = 1.0, 0.02  # about 25 messages/s/process
    worker = start_worker(concurrency=2)
    batch = _send_batch(campaign, 400)

    def recorded() -> int:
        return Message.objects.filter(batch_id=batch.pk, provider_message_id__isnull=False).count()

    # Kill when the gateway has accepted messages whose ids the worker has not stored yet: those
    # are the ones a blind re-send would duplicate.
    deadline = time.monotonic() + 120
    while not (len(gateway.sent) >= 150 and len(gateway.sent) - recorded() >= 5):
        assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(worker.pid, signal.SIGKILL)  # the parent and its children, mid-send
    worker.wait()
    accepted_at_kill = len(gateway.sent)
    assert accepted_at_kill < 400, "the batch finished before the kill; slow the gateway down"
    assert accepted_at_kill > recorded(), "nothing was in flight at the kill"

    start_worker(concurrency=2)
    _wait_until_settled(batch, expected=400)

    per_meter = Message.objects.filter(batch_id=batch.pk).values("meter").annotate(n=Count("id"))
    assert len(per_meter) == 400 and {row["n"] for row in per_meter} == {1}
    assert Message.objects.filter(batch_id=batch.pk).exclude(status="delivered").count() == 0
    batch.refresh_from_db()
    assert (batch.notified, *sms_tally(batch)[:2]) == (400, 400, 400)
    # Exactly one accepted send per customer, counted where it matters: at the gateway.
    numbers = set(Message.objects.filter(batch_id=batch.pk).values_list("recipient", flat=True))
    accepted = Counter(record.number for record in gateway.sent)
    assert set(accepted) == numbers and set(accepted.values()) == {1}, accepted.most_common(3)
    # The messages the gateway took before the kill were adopted from their reports, not re-sent.
    adopted = Message.objects.filter(batch_id=batch.pk, last_error__startswith="adopted by the sweep")
    assert adopted.count() >= 1
    assert set(adopted.values_list("provider_message_id", flat=True)) <= {r.message_id for r in gateway.sent}


def test_with_real_workers_the_batch_opens_as_its_last_notice_goes_out_without_a_sweep(
    meter_factory, gateway, start_worker
):
    campaign = _campaign(meter_factory, 250)
    start_worker(concurrency=2)  # two processes settle chunks concurrently
    batch = _send_batch(campaign, 250)
    deadline = time.monotonic() + 120
    pending = Message.objects.filter(batch_id=batch.pk, status__in=["queued", "sending"])
    while pending.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pending.exists(), "the workers did not send the batch's notices in 120 s"
    # The last worker's transaction commits a moment after its messages show as sent (seconds on a
    # loaded machine); no sweep runs in this test, so only the workers can open the batch.
    settle_by = time.monotonic() + 30
    batch.refresh_from_db()
    while batch.status != Batch.Status.OPEN and time.monotonic() < settle_by:
        time.sleep(0.2)
        batch.refresh_from_db()
    assert batch.status == Batch.Status.OPEN, "the batch waited for a sweep (none ran in this test)"
