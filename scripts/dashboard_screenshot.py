# ruff: noqa: S105, S603, T201 - a developer script: demo password, our own commands, progress output
"""Screenshot of the dashboard overview with demo data -> docs/dashboard-overview.png.

    .venv/bin/python scripts/dashboard_screenshot.py [--keep]

Creates a scratch PostgreSQL database (kplc_dash_shot), migrates it, loads the demo data
(`seed_demo`: 3,000 meters, staff users...), then plays three weeks of the campaign through the
real campaign services with the clock moved day by day (time-machine): a batch scheduled every
morning, its notices sent, codes issued, confirmations and failures as customers buy. Then it
serves the site, signs in as the demo manager in headless Chromium and saves the overview.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DATABASE = "kplc_dash_shot"
PASSWORD = "demo-pass-2024"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def admin_sql(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{SERVER}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def play_history(days: int = 21) -> None:
    import time_machine
    from django.utils import timezone

    from campaigns.models import Batch, Campaign, Enrollment
    from campaigns.services import (
        CampaignError,
        batch_notices_create,
        batch_schedule,
        campaign_create,
        enrollment_confirm,
        enrollment_mark_codes_issued,
        enrollment_mark_failed,
        notices_sent,
    )
    from meters.models import Meter
    from sms.models import Message
    from sms.tallies import tally_add

    rng = random.Random(7)
    today = timezone.localdate()
    start = today - dt.timedelta(days=days)
    with time_machine.travel(timezone.make_aware(dt.datetime.combine(start, dt.time(8))), tick=False):
        campaign = Campaign.objects.filter(status=Campaign.Status.ACTIVE).first() or campaign_create(
            name="Update Token Meter Yako 2024",
            sgcs=sorted(set(Meter.objects.values_list("sgc", flat=True))),
            from_krn=1,
            to_krn=2,
            deadline=today + dt.timedelta(days=24),
            daily_capacity=180,
            actor_label="demo",
        )
    regions = sorted(set(Meter.objects.values_list("region", flat=True)))
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        morning = timezone.make_aware(dt.datetime.combine(day, dt.time(9)))
        with time_machine.travel(morning - dt.timedelta(hours=1), tick=False):
            size = 40 + offset * 3 + rng.randrange(15)
            picked = [regions[offset % len(regions)], regions[(offset + 3) % len(regions)]]
            try:
                batch = batch_schedule(
                    campaign=campaign, regions=picked, sgcs=[], limit=size, scheduled_at=morning, actor_label="manager"
                )
            except CampaignError:  # those regions are done (the demo seed may have enrolled some)
                batch = batch_schedule(
                    campaign=campaign, regions=[], sgcs=[], limit=size, scheduled_at=morning, actor_label="manager"
                )
        with time_machine.travel(morning + dt.timedelta(minutes=5), tick=False):
            batch_notices_create(batch=batch)
            meter_ids = list(Message.objects.filter(batch_id=batch.pk).values_list("meter_id", flat=True))
            notices_sent(batch_id=batch.pk, meter_ids=meter_ids)
            failed = [m for m in meter_ids if rng.random() < 0.04]
            reasons = ["UserInBlacklist", "InvalidPhoneNumber", "AbsentSubscriber"]
            Message.objects.filter(batch_id=batch.pk).exclude(meter_id__in=failed).update(
                status=Message.Status.DELIVERED
            )
            for meter_id in failed:
                Message.objects.filter(batch_id=batch.pk, meter_id=meter_id).update(
                    status=Message.Status.FAILED, failure_reason=rng.choice(reasons)
                )
            tally_add(batch.pk, sent=len(meter_ids), delivered=len(meter_ids) - len(failed), failed=len(failed))
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.OPEN)
        # Customers buy over the following days: codes issued, some confirm, a few fail.
        with time_machine.travel(morning + dt.timedelta(hours=6), tick=False):
            waiting = list(Enrollment.objects.filter(campaign=campaign, state=Enrollment.State.NOTIFIED))
            for enrollment in waiting:
                if rng.random() < 0.33:
                    enrollment_mark_codes_issued(enrollment=enrollment, actor_label="partner:demo")
        with time_machine.travel(morning + dt.timedelta(hours=10), tick=False):
            issued = list(Enrollment.objects.filter(campaign=campaign, state=Enrollment.State.CODES_ISSUED))
            for enrollment in issued:
                roll = rng.random()
                if roll < 0.22:
                    enrollment_confirm(enrollment=enrollment, actor_label="ussd:demo")
                elif roll < 0.235:
                    enrollment_mark_failed(enrollment=enrollment, actor_label="ussd:demo", reason="codes rejected")
    # Tomorrow's batch is already on the books.
    tomorrow = timezone.make_aware(dt.datetime.combine(today + dt.timedelta(days=1), dt.time(9)))
    batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=60, scheduled_at=tomorrow, actor_label="manager")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shoot(base_url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
        page.goto(f"{base_url}/accounts/login/")
        page.fill("#id_username", "manager")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard/campaigns/*/")
        page.wait_for_selector("#daily-chart[data-ready='1']")
        page.wait_for_selector("#progress-chart[data-ready='1']")
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard-overview.png"))
    args = parser.parse_args()
    env = {**os.environ, "DATABASE_URL": f"{SERVER}/{DATABASE}", "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.local"}
    env.setdefault("DEMO_PASSWORD", PASSWORD)
    os.environ.update(env)
    admin_sql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    admin_sql(f'CREATE DATABASE "{DATABASE}"')
    python = str(ROOT / ".venv" / "bin" / "python")
    server = None
    try:
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([python, "manage.py", "seed_demo"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        play_history()
        from django.db import connection

        connection.close()
        port = free_port()
        server = subprocess.Popen(
            [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env={**env, "DJANGO_DEBUG": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(60):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        shoot(f"http://127.0.0.1:{port}", Path(args.out))
        print(f"Saved {args.out}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if not args.keep:
            admin_sql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()
