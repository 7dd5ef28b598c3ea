"""Load test of POST /api/v1/vends/ against gunicorn on PostgreSQL (loopback only, bounded time).

    .venv/bin/python bench/vend_load.py                         # 60 s measured, 16 connections
    .venv/bin/python bench/vend_load.py --duration 10 --meters 500   # quick check while developing

It creates a scratch database (default kplc_vend_bench, dropped at the end), migrates it, seeds
--meters meters (half enrolled in an open batch of a campaign, so every vend for them carries the
Reset and Update codes; half already confirmed on the new key, so credit token only), two vending
keys and a partner, starts gunicorn with production settings (DEBUG off, Redis cache for the
throttle, Redis broker for the SMS hand-off; no Celery worker, the SMS stay queued), and drives it
with its own asyncio HTTP/1.1 keep-alive client: --concurrency connections in a closed loop, each
sending vends with unique references, alternating a codes meter and a plain meter.

Reported: sustained vends/s over the measured window (after --warmup), latency p50/p95/p99/max,
the share of vends that carried codes, and any non-201 answer. Target on the 2-core dev machine:
>= 200 vends/s with p99 <= 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")


# --- seeding (runs in a child process with Django set up) ---------------------------------------------


def seed(meters: int) -> None:
    import django

    django.setup()
    import datetime as dt
    from decimal import Decimal

    from django.utils import timezone

    from campaigns.models import Batch, Campaign, Enrollment
    from meters.models import Meter
    from partners.services import partner_api_key_create, partner_create
    from tokens.custody import vending_key_load
    from tokens.sts import luhn_check_digit

    sgc = "600675"
    vending_key_load(sgc=sgc, krn=1, dkga="02", base_date=1993, key=bytes.fromhex("0123456789ABCDEF"), actor_label="b")
    vending_key_load(sgc=sgc, krn=2, dkga="02", base_date=2014, key=bytes.fromhex("FEDCBA9876543210"), actor_label="b")
    rows = []
    for n in range(meters):
        body = f"57{n:08d}"
        confirmed = n % 2 == 1
        rows.append(
            Meter(
                meter_number=body + str(luhn_check_digit(body)),
                sgc=sgc,
                ti=1,
                krn=2 if confirmed else 1,
                kt=2,
                ea="07",
                dkga="02",
                base_date=2014 if confirmed else 1993,
                key_state="confirmed" if confirmed else "old_key",
                customer_name=f"Customer {n}",
                phone=f"+2547{n:08d}",
                region="Nairobi",
            )
        )
    Meter.objects.bulk_create(rows, batch_size=2000)
    now = timezone.now()
    campaign = Campaign.objects.create(
        name="bench",
        sgcs=[sgc],
        from_krn=1,
        to_krn=2,
        deadline=dt.date(2030, 1, 1),
        daily_capacity=10_000_000,
    )
    batch = Batch.objects.create(
        campaign=campaign, number=1, selection_limit=meters, scheduled_at=now, status=Batch.Status.OPEN
    )
    codes = list(Meter.objects.filter(key_state="old_key"))
    Enrollment.objects.bulk_create(
        [
            Enrollment(campaign=campaign, meter=m, batch=batch, state="notified", enrolled_at=now, state_changed_at=now)
            for m in codes
        ],
        batch_size=2000,
    )
    partner = partner_create(
        name="Bench Bank", daily_limit=Decimal("1000000000.00"), throttle_rate="1000000/min", actor_label="bench"
    )
    _key, raw_key = partner_api_key_create(partner=partner, actor_label="bench")
    plain = list(Meter.objects.filter(key_state="confirmed").values_list("meter_number", flat=True))
    print(json.dumps({"key": raw_key, "codes": [m.meter_number for m in codes], "plain": plain}))


# --- the HTTP client ------------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.codes = 0
        self.errors: dict[str, int] = {}
        self.measuring = False


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _connection(
    index: int, port: int, key: str, meters: dict[str, list[str]], stats: Stats, stop_at: float
) -> None:
    rng = random.Random(index)
    reader = writer = None
    n = 0
    while time.monotonic() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        kind = "codes" if (index + n) % 2 == 0 else "plain"
        n += 1
        body = json.dumps(
            {
                "meter_number": rng.choice(meters[kind]),
                "amount": f"{rng.randint(50, 3000)}.00",
                "reference": f"B{index}-{n}-{secrets.token_hex(4)}",
            }
        ).encode()
        request = (
            b"POST /api/v1/vends/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Api-Key {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        started = time.perf_counter()
        try:
            writer.write(request)
            await writer.drain()
            status, payload, close = await _read_response(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            writer = None
            if stats.measuring:
                stats.errors["connection"] = stats.errors.get("connection", 0) + 1
            continue
        elapsed = time.perf_counter() - started
        if status != 201:
            label = f"HTTP {status} {payload[:120].decode(errors='replace')}"
            if not stats.measuring:
                label = "warm-up " + label
            stats.errors[label] = stats.errors.get(label, 0) + 1
        elif stats.measuring:
            stats.latencies.append(elapsed)
            stats.codes += b'"key_change":true' in payload
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def drive(
    port: int,
    key: str,
    meters: dict[str, list[str]],
    concurrency: int,
    warmup: float,
    duration: float,
    cpu: CpuMeter,
):
    stats = Stats()
    start = time.monotonic()
    stop_at = start + warmup + duration
    tasks = [asyncio.create_task(_connection(i, port, key, meters, stats, stop_at)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    before = cpu.snapshot(first=True)  # a few ms of blocking: the connections just wait for it
    before["postgres"] = 0.0
    tasks.append(asyncio.create_task(_sample(cpu, stop_at)))
    stats.measuring = True
    measured_from = time.monotonic()
    await asyncio.gather(*tasks)
    after = cpu.snapshot()
    return stats, time.monotonic() - measured_from, {name: after[name] - before[name] for name in before}


# --- orchestration --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def admin_sql(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_settle(server_pid: int, workers: int, timeout: float = 60.0) -> None:
    """Wait until every gunicorn worker has booted (all forked, none using CPU for half a second).

    /healthz answers as soon as one worker is up. The client's keep-alive connections, opened right
    then, were taken by the workers already accepting and stayed on them for the whole run: with
    the others still importing Django, a run could end up on two workers of four, the machine 66 %
    busy and p50 four times longer, by luck of the boot order (seen on both sides of an A/B)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = _children(server_pid)
        if len(children) >= workers:
            before = {pid: _cpu_seconds(pid) for pid in children}
            time.sleep(0.5)
            if all(_cpu_seconds(pid) == used for pid, used in before.items()):
                return
        else:
            time.sleep(0.2)
    raise SystemExit("gunicorn's workers did not settle")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _pg_backends(database_url: str) -> list[int]:
    import psycopg2

    conn = psycopg2.connect(database_url)
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cursor.fetchall()]
    conn.close()
    return pids


def _redis_pid() -> int | None:
    out = subprocess.run(["pidof", "redis-server"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def _machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used during the measured window by the server, its PostgreSQL backends, Redis,
    this load generator, and the whole machine (the rest is other people's work).

    Backends come and go (Django closes a connection after CONN_MAX_AGE), so they are sampled every
    second and each one's last reading counts (from 0 for one that started inside the window)."""

    def __init__(self, server_pid: int, database_url: str) -> None:
        self.server_pid, self.database_url = server_pid, database_url
        self.backends_start: dict[int, float] = {}
        self.backends_last: dict[int, float] = {}

    def sample_backends(self) -> None:
        for pid in _pg_backends(self.database_url):
            used = _cpu_seconds(pid)
            if used:
                self.backends_last[pid] = used

    def snapshot(self, *, first: bool = False) -> dict[str, float]:
        self.sample_backends()
        if first:
            self.backends_start = dict(self.backends_last)
        workers = [self.server_pid, *_children(self.server_pid)]
        redis_pid = _redis_pid()
        return {
            "gunicorn": sum(_cpu_seconds(pid) for pid in workers),
            "postgres": sum(used - self.backends_start.get(pid, 0.0) for pid, used in self.backends_last.items()),
            "redis": _cpu_seconds(redis_pid) if redis_pid else 0.0,
            "client": sum(os.times()[:2]),
            "machine": _machine_busy_seconds(),
        }


async def _sample(cpu: CpuMeter, stop_at: float) -> None:
    while time.monotonic() < stop_at - 1:
        await asyncio.sleep(1)
        cpu.sample_backends()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (after warm-up)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="client connections (closed loop)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--worker-class", default="gthread", help="gthread (keep-alive) or sync")
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--db", default="kplc_vend_bench")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("_seed", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._seed == "_seed":
        seed(args.meters)
        return

    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + args.db
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="kplc_sts.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        STS_KEK=secrets.token_hex(32),
        CACHE_URL=REDIS_URL,
        CELERY_BROKER_URL=REDIS_URL,
        LOG_LEVEL="WARNING",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",
        # Production refuses to start without these (issue 11); no worker runs, so nothing is sent.
        AT_API_URL="https://127.0.0.1:9/",
        AT_API_KEY="bench-at-key-" + "y" * 40,
        SMS_DELIVERY_REPORT_SECRET="bench-dlr-" + "z" * 40,
        USSD_CALLBACK_SECRET="bench-ussd-" + "w" * 40,
        PYTHONPATH=str(ROOT),
    )
    admin_sql(f'DROP DATABASE IF EXISTS "{args.db}"')
    admin_sql(f'CREATE DATABASE "{args.db}"')
    # A run killed before its own flush leaves the partner's daily total and rate windows behind:
    # the next warm-up would meet DAILY_LIMIT_EXCEEDED.
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], capture_output=True, check=True)
    server = None
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [PYTHON, __file__, "--meters", str(args.meters), "_seed"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        data = json.loads(seeded.stdout.strip().splitlines()[-1])
        port = free_port()
        server = subprocess.Popen(
            [
                GUNICORN,
                "kplc_sts.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--worker-class",
                args.worker_class,
                "--threads",
                str(args.threads),
                "--keep-alive",
                "30",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("gunicorn did not come up")
        workers_settle(server.pid, args.workers)
        meters = {"codes": data["codes"], "plain": data["plain"]}
        cpu = CpuMeter(server.pid, database_url)
        stats, window, used = asyncio.run(
            drive(port, data["key"], meters, args.concurrency, args.warmup, args.duration, cpu)
        )
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if not args.keep_db:
            admin_sql(f'DROP DATABASE IF EXISTS "{args.db}"')
        subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], capture_output=True)

    done = len(stats.latencies)
    print(f"vend_load: {args.duration:.0f} s measured after {args.warmup:.0f} s warm-up,", end=" ")
    print(f"{args.concurrency} connections,")
    print(
        f"  gunicorn {args.workers} workers x {args.threads} threads ({args.worker_class}), "
        f"{args.meters} meters, PostgreSQL"
    )
    print(f"  vends: {done} in {window:.1f} s = {done / window:.1f} vends/s")
    print(f"  with codes: {stats.codes} ({100 * stats.codes / max(done, 1):.1f} %)")
    if done:
        ms = [x * 1000 for x in stats.latencies]
        print(
            f"  latency ms: p50 {statistics.median(ms):.1f}  p95 {percentile(ms, 0.95):.1f}  "
            f"p99 {percentile(ms, 0.99):.1f}  max {max(ms):.1f}"
        )
    print(f"  errors: {sum(stats.errors.values())} {stats.errors if stats.errors else ''}")
    if done:
        per_vend = {name: 1000 * seconds / done for name, seconds in used.items()}
        ours = sum(v for k, v in per_vend.items() if k != "machine")
        print(
            "  CPU ms per vend: gunicorn {gunicorn:.2f}  postgres {postgres:.2f}  redis {redis:.2f}  "
            "load generator {client:.2f}".format(**per_vend)
            + f"  (sum {ours:.2f}; whole machine {per_vend['machine']:.2f}, "
            f"so {max(per_vend['machine'] - ours, 0):.2f} by other work)"
        )
        busy = 100 * used["machine"] / window / (os.cpu_count() or 1)
        print(f"  machine CPU busy: {busy:.0f} % of {os.cpu_count()} cores")
    print(f"  load average at the end: {os.getloadavg()[0]:.2f}")
    met = done and done / window >= 200 and percentile([x * 1000 for x in stats.latencies], 0.99) <= 150
    print(f"  target >= 200 vends/s with p99 <= 150 ms: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
