"""Campaign benchmark: enroll a 500,000-meter batch, write its notices, measure the send rate.

    .venv/bin/python bench/campaign_bench.py [--meters 500000] [--send 20000] [--workers 2] [--concurrency 2]
        [--no-dlr]

Works in its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/kplc_bench_camp), created and dropped by the script, and its
own Redis db (REDIS_URL, default redis://127.0.0.1:6379/2). Meters are generated in SQL
(generate_series, Luhn check digit computed in SQL). Targets: enrollment <= 30 s, notices <= 60 s,
end-to-end send >= 500 messages/s through the local gateway with two worker processes.

Delivery reports: unless --no-dlr, the gateway posts a report for every accepted message to
our endpoint served by gunicorn (gthread, keep-alive) while the workers send, as Africa's
Talking would; the script reports the send rate and the rate at which reports settled messages.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

METERS_SQL = """
INSERT INTO meters_meter (meter_number, iin, sgc, ti, krn, kt, ea, dkga, base_date, ken, account_number,
    customer_name, phone, region, status, key_state, created_at, updated_at)
SELECT partial || ((10 - (SELECT SUM(CASE WHEN (10 - i) %% 2 = 0
                                     THEN (substr(partial, i, 1)::int * 2) - CASE WHEN substr(partial, i, 1)::int >= 5
                                                                                 THEN 9 ELSE 0 END
                                     ELSE substr(partial, i, 1)::int END)
                          FROM generate_series(1, 10) AS i) %% 10) %% 10)::text,
       '600727', '600675', 1, 1, 2, '07', '02', 1993, 255, 'B' || n, 'Bench Customer ' || n,
       '+2547' || lpad(n::text, 8, '0'), CASE WHEN n %% 2 = 0 THEN 'Nairobi' ELSE 'Coast' END,
       'active', 'old_key', now(), now()
FROM (SELECT n, '58' || lpad(n::text, 8, '0') AS partial FROM generate_series(1, %s) AS n) AS s
"""


def _admin_sql(url: str, statement: str) -> None:
    import psycopg2

    parts = urllib.parse.urlparse(url)
    conn = psycopg2.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password, dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(statement)
    conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=500_000)
    parser.add_argument("--send", type=int, default=20_000, help="notices to send for the rate measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="do not drop the bench database")
    parser.add_argument("--no-dlr", action="store_true", help="no delivery reports (send rate alone)")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kplc_bench_camp")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2")
    db_name = urllib.parse.urlparse(url).path.lstrip("/")
    _admin_sql(url, f'DROP DATABASE IF EXISTS "{db_name}"')
    _admin_sql(url, f'CREATE DATABASE "{db_name}"')
    os.environ.update(
        DJANGO_SETTINGS_MODULE=os.environ.get("BENCH_SETTINGS", "kplc_sts.settings.base"),
        DATABASE_URL=url,
        SMS_BACKEND="sms.backends.memory.MemoryBackend",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    import datetime as dt

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Batch
    from campaigns.services import batch_notices_create, batch_schedule, campaign_create
    from sms.models import Message
    from sms.tallies import batch_tallies

    processes: list[subprocess.Popen] = []
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(METERS_SQL, [args.meters])
            cursor.execute("ANALYZE meters_meter")
        print(f"meters: {args.meters:,} generated in SQL in {time.perf_counter() - started:.1f} s")

        campaign = campaign_create(
            name="Bench",
            sgcs=["600675"],
            from_krn=1,
            to_krn=2,
            deadline=dt.date(2030, 8, 31),
            daily_capacity=10_000_000,
        )
        now = timezone.now()
        started = time.perf_counter()
        batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=args.meters, scheduled_at=now)
        enroll_s = time.perf_counter() - started
        print(
            f"enroll: {batch.enrolled:,} meters in {enroll_s:.1f} s "
            f"({batch.enrolled / enroll_s:,.0f}/s), target <= 30 s"
        )

        started = time.perf_counter()
        created = batch_notices_create(batch=batch)
        notices_s = time.perf_counter() - started
        print(f"notices: {created:,} messages in {notices_s:.1f} s ({created / notices_s:,.0f}/s), target <= 60 s")

        # End to end: workers claim, send through the real SDK to the local gateway, record.
        port = _free_port()
        gateway_command = [sys.executable, "manage.py", "fake_africastalking", "--port", str(port)]
        if not args.no_dlr:
            from django.conf import settings

            web_port = _free_port()
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "kplc_sts.wsgi:application",
                        "-b",
                        f"127.0.0.1:{web_port}",
                        "-k",
                        "gthread",
                        "-w",
                        "1",
                        "--threads",
                        "4",
                        "--keep-alive",
                        "30",
                    ],
                    cwd=BASE_DIR,
                    env={**os.environ, "LOG_LEVEL": "WARNING"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            callback = f"http://127.0.0.1:{web_port}/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
            gateway_command += ["--callback", callback, "--dlr-delay", "0.5"]
        gateway = subprocess.Popen(
            gateway_command,
            cwd=BASE_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        processes.append(gateway)
        env = {
            **os.environ,
            "CELERY_BROKER_URL": redis_url,
            "SMS_BACKEND": "sms.backends.africastalking.AfricasTalkingBackend",
            "AT_API_URL": f"http://127.0.0.1:{port}",
            "SMS_SEND_RATE": "100000",
            "SMS_RATE_REDIS_URL": redis_url,
        }
        import redis

        redis.Redis.from_url(redis_url).delete("sms_notices", "sms_codes")
        for index in range(args.workers):
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "kplc_sts",
                        "worker",
                        "-Q",
                        "sms_notices,sms_codes",
                        "-c",
                        str(args.concurrency),
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "-n",
                        f"bench{index}@%h",
                        "-l",
                        "WARNING",
                    ],
                    cwd=BASE_DIR,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        time.sleep(8)  # worker start-up is not part of the send rate
        from kplc_sts.celery import app

        app.conf.update(task_always_eager=False, broker_url=redis_url)
        from sms.services import message_dispatch

        ids = list(Message.objects.filter(batch_id=batch.pk).order_by("pk").values_list("pk", flat=True)[: args.send])
        started = time.perf_counter()
        for start in range(0, len(ids), 100):
            message_dispatch(ids[start : start + 100], queue="sms_notices")
        mine = Message.objects.filter(pk__lte=ids[-1], batch_id=batch.pk)
        while True:
            done = mine.filter(status__in=["sent", "delivered"]).count()
            elapsed = time.perf_counter() - started
            if done >= len(ids) or elapsed > 600:
                break
            time.sleep(0.25)
        print(
            f"send: {done:,} notices in {elapsed:.1f} s = {done / elapsed:,.0f} msg/s with {args.workers} workers "
            f"x {args.concurrency} processes, target >= 500 msg/s"
        )
        if not args.no_dlr:
            while True:
                delivered = mine.filter(status="delivered").count()
                settled_s = time.perf_counter() - started
                if delivered >= done or settled_s > 600:
                    break
                time.sleep(0.25)
            print(
                f"delivery reports: {delivered:,} messages settled {settled_s:.1f} s after the first send "
                f"= {delivered / settled_s:,.0f} reports/s (sent concurrently; the last ones 0.5 s after their send)"
            )
        # A chunk's counters are committed just after its statuses: give the last one a moment.
        deadline = time.monotonic() + 30
        while True:
            batch.refresh_from_db()
            tally = batch_tallies(batch_ids=[batch.pk])[batch.pk]
            if tally.sent >= done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert tally.sent == done and batch.notified == done, (tally.sent, batch.notified, done)
        if not args.no_dlr:
            assert tally.delivered == delivered, (tally.delivered, delivered)
        assert Batch.objects.get(pk=batch.pk).enrolled == args.meters
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(20)
            except Exception:  # noqa: BLE001
                pass
        connection.close()
        if not args.keep:
            _admin_sql(url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
