"""The one clock on a rehearsal's accelerated setting: what follows it, and what must not.

Each test sets up an accelerated clock the way a rehearsal starts its processes (CLOCK_START,
CLOCK_WALL_START, CLOCK_SPEED) and moves the wall clock with time_machine, which the clock reads
underneath. Every assertion here fails on code that reads the wall clock where it should read
the accelerated one (or the other way round).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings as django_settings

from audit.models import AuditEvent
from audit.services import audit_record
from kplc_sts import clock
from kplc_sts.ratelimit import Window
from meters.models import Meter
from sms.backends.base import SendResult
from sms.models import Message
from sms.services import messages_sweep
from sms.services import sending as sms_sending

NAIROBI = ZoneInfo("Africa/Nairobi")
SIM_START = dt.datetime(2024, 6, 12, 8, 0, tzinfo=NAIROBI)
WALL_START = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
SPEED = 3600.0  # one wall second is one clock hour


@pytest.fixture
def accelerated(settings):
    """An accelerated clock, the wall clock frozen at its start; `.shift(seconds)` moves the wall."""
    settings.CLOCK_START = SIM_START
    settings.CLOCK_WALL_START = WALL_START.timestamp()
    settings.CLOCK_SPEED = SPEED
    with time_machine.travel(WALL_START, tick=False) as traveller:
        yield traveller


def test_the_clock_runs_at_its_speed_from_its_start(accelerated):
    assert clock.now() == SIM_START
    accelerated.shift(2.5)  # wall seconds
    assert clock.now() == SIM_START + dt.timedelta(hours=2.5)
    assert clock.localdate() == dt.date(2024, 6, 12)
    assert clock.timestamp() == (SIM_START + dt.timedelta(hours=2.5)).timestamp()


def test_durations_convert_between_the_clock_and_the_wall(accelerated):
    assert clock.to_wall(3600) == 1.0  # a clock hour lasts a wall second
    assert clock.from_wall(2) == 7200.0  # two wall seconds are two clock hours
    assert clock.cache_ttl(24 * 3600) == 24  # a day of clock time: 24 wall seconds in the cache
    assert clock.cache_ttl(600, at_least=30) == 30  # but never under the floor


def test_on_the_wall_clock_durations_are_unchanged():
    assert not clock.accelerated()
    assert (clock.to_wall(30), clock.from_wall(30), clock.cache_ttl(600)) == (30, 30, 600)


def test_customer_windows_count_clock_time_and_load_windows_wall_time(accelerated):
    per_hour = Window(key="copies", seconds=3600, on_clock=True)
    per_minute_load = Window(key="partner", seconds=60)
    first_customer, first_load = per_hour.current()[0], per_minute_load.current()[0]
    accelerated.shift(1.5)  # 1.5 clock hours: a new hourly window; the same wall minute
    assert per_hour.current()[0] != first_customer
    assert per_minute_load.current()[0] == first_load


@pytest.mark.django_db
def test_auto_timestamps_are_on_the_clock(accelerated, meter_factory):
    accelerated.shift(10)
    meter = meter_factory.create()
    audit_record(action="test.clock", actor_label="test")
    expected = SIM_START + dt.timedelta(hours=10)
    assert meter.created_at == meter.updated_at == expected
    assert AuditEvent.objects.get(action="test.clock").at == expected
    accelerated.shift(1)
    meter.customer_name = "Renamed"
    meter.save()
    assert Meter.objects.get(pk=meter.pk).updated_at == expected + dt.timedelta(hours=1)


@pytest.mark.django_db
def test_a_retry_waits_its_back_off_on_the_clock_and_celery_counts_it_in_wall_seconds(
    accelerated, settings, monkeypatch
):
    settings.SMS_RETRY_BASE_SECONDS = 1800  # clock seconds: half an hour
    settings.SMS_RETRY_MAX_SECONDS = 3600
    dispatched: list[float | None] = []
    monkeypatch.setattr(
        sms_sending, "message_dispatch", lambda ids, *, queue, countdown=None: dispatched.append(countdown)
    )
    monkeypatch.setattr(sms_sending.random, "uniform", lambda low, high: 1.0)  # no jitter
    message = Message.objects.create(recipient="+254712345678", body="x", purpose="codes", status="sending", attempts=1)
    status = sms_sending.message_record_failure(message=message, result=SendResult.retry("HTTP 500", "Gateway"))
    message.refresh_from_db()
    assert status == "queued"
    assert message.next_attempt_at == SIM_START + dt.timedelta(minutes=30)
    assert dispatched == [0.5]  # half a clock hour is half a wall second


@pytest.mark.django_db
def test_the_sweep_judges_stuck_sends_by_wall_time(accelerated, settings):
    """A send claimed one wall second ago is a clock hour old: far past SMS_SENDING_STALE_SECONDS of
    clock time, but a worker may well still be on it. Re-sending it would send it twice."""
    settings.SMS_SENDING_STALE_SECONDS = 120
    settings.SMS_DLR_GRACE_SECONDS = 180
    claimed = Message.objects.create(
        recipient="+254712345678", body="x", purpose="notice", status="sending", attempts=1, claimed_at=clock.now()
    )
    accelerated.shift(1)
    assert messages_sweep()["requeued"] == 0
    assert Message.objects.get(pk=claimed.pk).status == "sending"
    accelerated.shift(180)  # now three wall minutes without a report: the worker is gone
    assert messages_sweep()["requeued"] == 1
    resent = Message.objects.get(pk=claimed.pk)
    assert (resent.status, resent.attempts) == ("sent", 2)  # queued again and sent (tasks run eagerly here)


def test_beat_intervals_shrink_with_the_speed_down_to_a_floor(tmp_path: Path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.base",
        "KPLC_VAR_DIR": str(tmp_path),
        "CLOCK_START": SIM_START.isoformat(),
        "CLOCK_WALL_START": "0",
        "CLOCK_SPEED": "1800",
        "CLOCK_BEAT_MIN_SECONDS": "1",
    }
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps({k: v['schedule'] for k, v in settings.CELERY_BEAT_SCHEDULE.items()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    schedule = json.loads(out.stdout.strip().splitlines()[-1])
    assert schedule["campaigns-refresh-targets"] == 2.0  # an hour of clock time at 1800x
    assert schedule["campaigns-start-due-batches"] == 1.0  # 30 s / 1800 = 17 ms: floored
    assert schedule["sms-sweep"] == 1.0


def test_the_gateway_reports_after_clock_seconds(tmp_path: Path):
    """`fake_africastalking --dlr-delay 3600` on a 3600x clock reports about one wall second later."""
    import socket
    import time
    import urllib.parse
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    received: list[float] = []

    class Callback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    callback = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    Thread(target=callback.serve_forever, daemon=True).start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.base",
        "KPLC_VAR_DIR": str(tmp_path),
        "CLOCK_START": SIM_START.isoformat(),
        "CLOCK_WALL_START": str(time.time()),
        "CLOCK_SPEED": "3600",
    }
    url = f"http://127.0.0.1:{callback.server_address[1]}/dlr/"
    gateway = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "fake_africastalking",
            "--port",
            str(port),
            "--callback",
            url,
            "--dlr-delay",
            "3600",
        ],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        form = urllib.parse.urlencode({"username": "kplc", "to": "+254712345678", "message": "hi"}).encode()
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/version1/messaging", data=form, timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        sent_at = time.monotonic()
        while not received and time.monotonic() - sent_at < 10:
            time.sleep(0.02)
        assert received, "no delivery report"
        assert 0.7 < received[0] - sent_at < 3.0  # one clock hour = one wall second (not an hour, not 0.5 s)
        feed = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/messages?since=0").read())
        assert feed["next"] == 1 and feed["messages"][0]["number"] == "+254712345678"
    finally:
        gateway.terminate()
        gateway.wait(10)
        callback.shutdown()


@pytest.mark.django_db
def test_tids_follow_the_accelerated_clock_and_stay_strictly_increasing(accelerated, settings):
    from tests.factories import MeterFactory
    from tests.vending.factories import enroll, load_vending_keys, make_campaign, make_partner, virtual_meter
    from tokens.models import IssuedToken
    from tokens.services import vend_create
    from tokens.sts import BaseDate, tid_from_datetime

    load_vending_keys()
    partner, _key = make_partner()
    meter = MeterFactory.create()
    device = virtual_meter(meter)
    enroll(meter, make_campaign())
    tids = []
    for index in range(4):
        # The same wall instant twice, then a wall second (a clock hour) later, twice.
        if index == 2:
            accelerated.shift(1)
        outcome = vend_create(
            partner=partner, meter_number=meter.meter_number, amount=Decimal("100"), reference=f"R{index}"
        )
        tokens = [token["digits"] for token in json.loads(outcome.body)["tokens"]]
        for digits in tokens if index == 0 else tokens[-1:]:
            assert device.enter(digits).accepted
        tids.append(IssuedToken.objects.get(vend=outcome.vend).tid)
    assert tids == sorted(set(tids)), tids
    wall = clock.now().astimezone(NAIROBI).replace(tzinfo=None)
    assert tids[-1] >= tid_from_datetime(wall, BaseDate.BD_2014)  # minutes on the clock, not the wall
    assert tids[2] - tids[0] >= 59  # a clock hour apart
