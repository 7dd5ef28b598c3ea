"""`manage.py rehearse`: drive the real stack through a whole campaign on an accelerated clock.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kplc_rehearsal \\
      nice -n 10 .venv/bin/python manage.py rehearse --meters 3000 --days 21 --fail-rate 0.1 \\
      --kill-worker --redis-restart --out var/rehearsal

It builds on the PostgreSQL database DATABASE_URL names (created if missing, migrated, emptied;
refused if it holds a register a rehearsal did not make, unless --wipe), starts Redis (its own one,
or the broker CELERY_BROKER_URL names), the local Africa's Talking gateway, gunicorn, Celery workers
and beat as separate processes on one accelerated clock, plays the campaign, checks the
invariants, writes report.json, curve.csv and curve.png to --out, stops everything it started, and
exits 1 if any invariant was violated.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from tqdm import tqdm

from accounts.roles import CAMPAIGN_MANAGER, CARE_AGENT, roles_sync
from campaigns.services import campaign_create
from kplc_sts import clock
from meters.models import Meter
from meters.services import meter_import
from partners.services import partner_api_key_create, partner_create
from tokens.custody import vending_key_load

from ...checks import Dashboard, faults_injected, invariants_check
from ...features import FEATURES
from ...population import (
    ACCOUNT_PREFIX,
    SUPPLY_GROUPS,
    Behaviour,
    customers_draw,
    gateway_numbers,
    register_write,
    vending_keys_draw,
    virtual_meters_make,
)
from ...report import KPLC_DEADLINE, KPLC_LAUNCH, capacity_at_kplc, daily_rows, write_outputs
from ...simulation import DAY, Simulation, percentile
from ...stack import Stack, StackConfig

NAIROBI = ZoneInfo("Africa/Nairobi")
# Wall time the whole stack spends per vend and per SMS (gateway, worker, delivery report) with about
# one of this machine's two shared cores free: the default speed keeps the play on the clock. A
# quiet machine is several times faster (docs/benchmarks.md); pass --day-seconds to go faster.
WALL_SECONDS_PER_VEND = 0.05
WALL_SECONDS_PER_SMS = 0.03
CHANNEL_PARTNERS = {"mobile_money": "M-Pesa aggregator", "bank": "Rehearsal Bank", "agent": "Agent network"}


class Command(BaseCommand):
    help = "Rehearse a whole campaign on the real stack with a simulated population, faults on request."

    def add_arguments(self, parser: CommandParser) -> None:
        default_days = (KPLC_DEADLINE - KPLC_LAUNCH).days + 1
        parser.add_argument("--meters", type=int, default=3000, help="customers (each with one meter)")
        parser.add_argument(
            "--days", type=int, default=default_days, help="simulated days (default: launch to deadline)"
        )
        parser.add_argument("--start", default=KPLC_LAUNCH.isoformat(), help="first simulated day (Nairobi)")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--day-seconds", type=float, help="wall seconds per simulated day (default: from the expected load)"
        )
        parser.add_argument("--capacity", type=int, help="meters the manager may schedule per day (default N/35)")
        parser.add_argument("--fail-rate", type=float, default=0.0, help="share of gateway sends failing transiently")
        parser.add_argument("--kill-worker", action="store_true", help="SIGKILL a Celery worker mid-batch, restart it")
        parser.add_argument("--redis-restart", action="store_true", help="restart Redis mid-campaign (own Redis)")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--celery-workers", type=int, default=2, help="Celery worker processes")
        parser.add_argument("--lanes", type=int, default=8, help="simulator threads (concurrent customers)")
        parser.add_argument("--purchase-scale", type=float, default=1.0, help="multiply every purchase rate")
        parser.add_argument(
            "--feature", action="append", default=[], choices=sorted(FEATURES), help="switch a feature on"
        )
        parser.add_argument("--out", default="var/rehearsal", help="directory for report.json, curve.csv/png, logs")
        parser.add_argument("--wipe", action="store_true", help="empty the database even if it holds a real register")
        parser.add_argument(
            "--shared-redis",
            action="store_true",
            help="use the broker CELERY_BROKER_URL names instead of a Redis of the rehearsal's own",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        load_before = os.getloadavg()
        if options["redis_restart"] and options["shared_redis"]:
            raise CommandError("--redis-restart needs a Redis the rehearsal owns: drop --shared-redis")
        if options["meters"] < 10 or options["days"] < 1:
            raise CommandError("at least 10 meters and 1 day")
        out = Path(options["out"]).resolve()
        out.mkdir(parents=True, exist_ok=True)
        (out / "var").mkdir(exist_ok=True)
        self._database_prepare(wipe=options["wipe"])
        behaviour = Behaviour(purchase_scale=options["purchase_scale"])
        meters, days = options["meters"], options["days"]
        capacity = options["capacity"] or math.ceil(meters / 35)
        start = dt.datetime.combine(dt.date.fromisoformat(options["start"]), dt.time(0, 0), tzinfo=NAIROBI)
        vends_per_day = meters * behaviour.mean_purchases(days) / days
        sms_per_day = capacity + 1.1 * vends_per_day  # notices, the vends' SMS, *977# copies
        day_seconds = options["day_seconds"] or max(
            2.0, vends_per_day * WALL_SECONDS_PER_VEND + sms_per_day * WALL_SECONDS_PER_SMS
        )
        speed = DAY / day_seconds
        features = [FEATURES[name]() for name in options["feature"]]

        # Set-up happens the day before the play, on a clock running at wall speed.
        self._clock_set(start - dt.timedelta(days=1), time.time(), 1.0)
        self._say(f"population: {meters:,} customers, seed {options['seed']}")
        customers = customers_draw(meters, seed=options["seed"], behaviour=behaviour)
        register = out / "register.csv"
        register_write(customers, register)
        result = meter_import(path=register, rejects_path=out / "register.rejects.csv", actor_label="rehearsal")
        if result.inserted != meters:
            raise CommandError(f"the register import loaded {result.inserted} of {meters} meters")
        keys = vending_keys_draw(options["seed"])
        for (sgc, krn), key in keys.items():
            vending_key_load(
                sgc=sgc, krn=krn, dkga="02", base_date=1993 if krn == 1 else 2014, key=key, actor_label="rehearsal"
            )
        virtual_meters_make(customers, keys)
        campaign = campaign_create(
            name="Update Token Meter Yako (rehearsal)",
            sgcs=list(SUPPLY_GROUPS),
            from_krn=1,
            to_krn=2,
            deadline=KPLC_DEADLINE,
            daily_capacity=capacity,
            actor_label="rehearsal",
        )
        partners = {}
        for channel, name in CHANNEL_PARTNERS.items():
            partner = partner_create(name=name, actor_label="rehearsal")
            partners[channel] = partner_api_key_create(partner=partner, name="rehearsal", actor_label="rehearsal")[1]
        roles_sync()
        password = secrets.token_urlsafe(16)
        manager = User.objects.create_user("rehearsal-manager", password=password, is_staff=True)
        manager.groups.add(Group.objects.get(name=CAMPAIGN_MANAGER))
        care_agent = User.objects.create_user("rehearsal-care", password=secrets.token_urlsafe(16), is_staff=True)
        care_agent.groups.add(Group.objects.get(name=CARE_AGENT))
        numbers = out / "gateway-numbers.json"
        numbers.write_text(json.dumps(gateway_numbers(customers)))
        setup_seconds = time.monotonic() - started

        extra_env: dict[str, str] = {}
        for feature in features:
            extra_env.update(feature.env())
        boot_budget = 25 + 4 * options["celery_workers"] + 2 * options["web_workers"]
        wall_start = time.time() + boot_budget
        clock_env = {"CLOCK_START": start.isoformat(), "CLOCK_WALL_START": repr(wall_start), "CLOCK_SPEED": repr(speed)}
        config = StackConfig(
            out=out,
            database_url=_database_url(),
            clock_env=clock_env,
            web_workers=options["web_workers"],
            celery_workers=options["celery_workers"],
            fail_rate=options["fail_rate"],
            numbers_file=numbers,
            redis_url=(settings.CELERY_BROKER_URL or None) if options["shared_redis"] else None,
            seed=options["seed"],
            extra_env=extra_env,
        )
        if options["shared_redis"] and not settings.CELERY_BROKER_URL:
            raise CommandError("--shared-redis needs CELERY_BROKER_URL")
        connection.close()  # the children open their own; ours reopens on the next query
        stack = Stack(config)
        self._say(
            f"stack: web {stack.web_url}, gateway {stack.gateway_url}, broker {stack.broker_url}; "
            f"clock x{speed:,.0f} ({day_seconds:.1f} s per simulated day), logs in {stack.logs}"
        )
        with stack:
            stack.start()
            stack.wait_ready()
            stack.supervise()
            self._clock_set(start, wall_start, speed)
            waited = max(wall_start - time.time(), 0.0)
            time.sleep(waited)
            play_started = time.monotonic()
            machine_before, own_before = _machine_busy_seconds(), sum(os.times()[:2])
            bar = tqdm(total=days, unit="day", desc="rehearsal", dynamic_ncols=True, mininterval=0.5)
            progress = _Progress(bar, start.timestamp(), days)
            simulation = Simulation(
                customers=customers,
                stack=stack,
                campaign=campaign,
                partners=partners,
                behaviour=behaviour,
                start=start,
                days=days,
                capacity=capacity,
                seed=options["seed"],
                lanes=options["lanes"],
                manager=manager,
                care_agent=care_agent,
                kill_worker=options["kill_worker"],
                redis_restart=options["redis_restart"],
                features=features,
                progress=progress,
            )
            simulation.run()
            bar.close()
            play_seconds = time.monotonic() - play_started
            cpu = {name: round(seconds, 1) for name, seconds in stack.cpu_seconds().items()}
            cpu["simulator"] = round(sum(os.times()[:2]) - own_before, 1)
            cpu["postgres_backends_alive"] = round(_postgres_backend_seconds(), 1)
            cpu["machine_busy"] = round(_machine_busy_seconds() - machine_before, 1)
            died = stack.check_alive()
            self._say("checking the invariants")
            dashboard = Dashboard(stack.web_port, manager.username, password)
            try:
                violations, details = invariants_check(simulation, campaign=campaign, dashboard=dashboard)
            finally:
                dashboard.close()
            violations.update(faults_injected(simulation, wanted=options))
            violations["processes_died"] = len(died)
            gateway_stats = _gateway_stats(stack)
        rows = daily_rows(simulation)
        latencies = [x for stats in simulation.days_stats.values() for x in stats.vend_latencies]
        ussd = [x for stats in simulation.days_stats.values() for x in stats.ussd_latencies]
        total_vends = sum(row["vends"] for row in rows)
        report = {
            "title": f"Campaign rehearsal: {meters:,} customers, {days} days"
            + (f", gateway failing {options['fail_rate']:.0%}" if options["fail_rate"] else "")
            + (", worker killed" if options["kill_worker"] else "")
            + (", Redis restarted" if options["redis_restart"] else ""),
            "passed": not any(violations.values()),
            "invariants": violations,
            "parameters": {
                key: options[key]
                for key in (
                    "meters",
                    "days",
                    "start",
                    "seed",
                    "fail_rate",
                    "kill_worker",
                    "redis_restart",
                    "web_workers",
                    "celery_workers",
                    "lanes",
                    "purchase_scale",
                    "feature",
                )
            }  # fmt: skip
            | {"capacity": capacity, "day_seconds": round(day_seconds, 2), "clock_speed": round(speed, 1)},
            "behaviour": {k: v for k, v in behaviour.__dict__.items()},
            "features": options["feature"],
            "feature_runs": {"send_reminders": simulation.reminder_runs, "push_codes": simulation.push_runs},
            "timing": {
                "setup_seconds": round(setup_seconds, 1),
                "play_seconds": round(play_seconds, 1),
                "total_seconds": round(time.monotonic() - started, 1),
                "boot_wait_seconds": round(waited, 1),
                # Wall seconds each batch_schedule took: its enrollments are invisible for that long.
                "batch_schedule_wall_seconds_max": round(max(simulation.schedule_wall_seconds, default=0.0), 2),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "cpu_count": os.cpu_count(),
                # CPU seconds during the play: the stack's processes, this simulator, the database's
                # live backends, and the whole machine (the rest is other people's work).
                "cpu_seconds": cpu,
            },
            "totals": {
                "vends": total_vends,
                "vends_with_codes": sum(row["vends_with_codes"] for row in rows),
                "vends_per_wall_second": round(total_vends / max(play_seconds, 1e-9), 1),
                "vend_p50_ms": _ms(percentile(latencies, 0.5)),
                "vend_p99_ms": _ms(percentile(latencies, 0.99)),
                "ussd_p99_ms": _ms(percentile(ussd, 0.99)),
                "ussd_sessions": sum(row["ussd_sessions"] for row in rows),
                "ussd_busy_retries": simulation.ussd_busy,
                "gateway_messages": simulation.gateway_messages,
                "notices_at_gateway": sum(simulation.gateway_notices.values()),
                "batches": simulation.batches_scheduled,
                "scheduled": simulation.manager_scheduled,
                "partner_retries": simulation.partner_retries,
                "double_submits": simulation.double_submits,
                "max_lag_simulated_seconds": round(max((row["lag_max_s"] for row in rows), default=0), 1),
            },
            "gateway": gateway_stats,
            "faults": simulation.faults,
            "processes_died": died,
            # Exits the supervisor restarted, as the deployment's restart policy would (rehearsal/stack.py).
            "process_exits": stack.exits,
            "capacity_at_kplc": capacity_at_kplc(simulation, rows),
            "details": details,
            "errors": simulation.errors,
            "per_day": rows,
        }
        write_outputs(out, report, rows, meters)
        for name, count in violations.items():
            style = self.style.SUCCESS if count == 0 else self.style.ERROR
            self.stdout.write(style(f"  {name}: {count}"))
        for ended in stack.exits:
            last_line = (str(ended["log_tail"]).strip().splitlines() or [""])[-1]
            said = f"  restarted {ended['process']} (exit status {ended['exit_status']}): {last_line}"
            self.stdout.write(self.style.WARNING(said))
        kplc = report["capacity_at_kplc"]
        self.stdout.write(
            f"{total_vends:,} vends ({report['totals']['vends_per_wall_second']}/s wall, p99 "
            f"{report['totals']['vend_p99_ms']} ms); at 7.4 M: peak {kplc['peak_vends_per_second']} vends/s, "
            f"{kplc['notices_per_day_peak']:,} notices/day; {report['timing']['total_seconds']:.0f} s in all; "
            f"report in {out / 'report.json'}"
        )
        if not report["passed"]:
            raise SystemExit(1)

    # --- helpers -----------------------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    @staticmethod
    def _clock_set(start: dt.datetime, wall_start: float, speed: float) -> None:
        settings.CLOCK_START = start
        settings.CLOCK_WALL_START = wall_start
        settings.CLOCK_SPEED = speed

    def _database_prepare(self, *, wipe: bool) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("a rehearsal runs on PostgreSQL: set DATABASE_URL (e.g. postgres://.../kplc_rehearsal)")
        _database_create_if_missing()
        call_command("migrate", verbosity=0, interactive=False)
        if Meter.objects.exclude(account_number__startswith=ACCOUNT_PREFIX).exists() and not wipe:
            raise CommandError(
                f"database {connection.settings_dict['NAME']!r} holds meters no rehearsal made (a real register?): "
                "refusing to empty it. Point DATABASE_URL at a scratch database, or pass --wipe."
            )
        call_command("flush", verbosity=0, interactive=False)


class _Progress:
    def __init__(self, bar: Any, start_ts: float, days: int) -> None:
        self.bar, self.start_ts, self.days = bar, start_ts, days
        self.last_vends, self.last_at = 0, time.monotonic()

    def __call__(self, simulation: Simulation) -> None:
        day = min(int((clock.timestamp() - self.start_ts) // DAY), self.days)
        if day > self.bar.n:
            self.bar.update(day - self.bar.n)
        vends = sum(stats.vends for stats in simulation.days_stats.values())
        now = time.monotonic()
        rate = (vends - self.last_vends) / max(now - self.last_at, 1e-6)
        self.last_vends, self.last_at = vends, now
        updated = sum(stats.on_new_key for stats in simulation.days_stats.values())
        self.bar.set_postfix(
            vends=vends,
            per_s=f"{rate:.0f}",
            sms=simulation.gateway_messages,
            updated=f"{100 * updated / max(len(simulation.customers), 1):.0f}%",
            lag_h=f"{simulation.lag_max / 3600:.1f}",
            refresh=False,
        )
        if simulation.draining:
            self.bar.set_description("rehearsal (draining)")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _database_create_if_missing() -> None:
    import psycopg2

    db = connection.settings_dict
    try:
        connection.ensure_connection()
        return
    except Exception:  # noqa: BLE001 - missing database or not: try to create it, and report that failure
        connection.close()
    admin = psycopg2.connect(
        dbname="postgres",
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{db["NAME"]}"')
    admin.close()


def _machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def _postgres_backend_seconds() -> float:
    """CPU of the rehearsal database's backends still connected (closed ones are not counted)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        pids = [row[0] for row in cursor.fetchall()]
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


def _gateway_stats(stack: Stack) -> dict[str, Any]:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=30)
        conn.request("GET", "/_fake/stats")
        stats: dict[str, Any] = json.loads(conn.getresponse().read())
        conn.close()
        return stats
    except (OSError, ValueError):
        return {}
