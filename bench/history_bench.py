"""Vends on a small database against one holding months of history, side by side (issue 16).

    .venv/bin/python bench/history_bench.py setup --db kplc_hist_small
    .venv/bin/python bench/history_bench.py setup --db kplc_hist_big --fill-vends 3000000 --fill-meters 1000000
    .venv/bin/python bench/history_bench.py run --small kplc_hist_small --big kplc_hist_big --rounds 3 --duration 30
    .venv/bin/python bench/history_bench.py drop --db kplc_hist_small --db kplc_hist_big

    .venv/bin/python bench/history_bench.py cluster start --shared-buffers 6GB   # prints BENCH_PG_ADMIN_URL
    .venv/bin/python bench/history_bench.py cluster stop

By default the databases live on the machine's PostgreSQL (BENCH_PG_ADMIN_URL, stock settings).
`cluster start` makes a throwaway cluster that includes deploy/postgres/postgresql.conf (its memory
lines scaled to this machine by --shared-buffers and --effective-cache-size) and prints the
BENCH_PG_ADMIN_URL to export so that setup, run and drop use it; `cluster stop` removes it.

`setup` creates and migrates a database, seeds it as bench/vend_load.py does (--meters meters, half
due their update codes), makes a few real vends through the service (the templates), then, with
--fill-*, fills the models' real tables set-based (INSERT ... SELECT generate_series): extra meters,
enrollments and key change sets for them, and --fill-vends vends with their references, credit
tokens and token digests spread evenly over --months months before now (this month included, up to
now), each in its month's partition; bodies older than the replay window are compacted, as the
hourly task leaves them.

`run` drives the same load (bench/vend_load.py's client: --concurrency connections, unique
references, alternating a codes meter and a plain meter) against gunicorn on each database in turn,
alternating which goes first, --rounds times, and reports per database the median over rounds of
vends/s, p99, PostgreSQL CPU per vend (the database's backends, from /proc) and WAL per vend. WAL is
counted with pg_walinspect over the window's LSN range, only the records that touch this database's
relations (other databases on the shared server write WAL too), full-page images included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vend_load

ROOT = vend_load.ROOT
STATE = ROOT / "var" / "bench"
ADMIN = vend_load.PG_ADMIN_URL


def url_for(db: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + "/" + db


def env_for(db: str, settings: str = "kplc_sts.settings.production") -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=url_for(db),
        DJANGO_SETTINGS_MODULE=settings,
        DJANGO_SECRET_KEY="bench-" + "x" * 50,
        STS_KEK="11" * 32,
        CACHE_URL=vend_load.REDIS_URL,
        CELERY_BROKER_URL=vend_load.REDIS_URL,
        LOG_LEVEL="WARNING",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",
        # Production refuses to start without these; the bench runs no worker, so nothing is sent.
        AT_API_URL="https://127.0.0.1:9/",
        AT_API_KEY="bench-at-key-" + "y" * 40,
        SMS_DELIVERY_REPORT_SECRET="bench-dlr-" + "z" * 40,
        USSD_CALLBACK_SECRET="bench-ussd-" + "w" * 40,
        PYTHONPATH=str(ROOT),
    )


# --- setup ------------------------------------------------------------------------------------------------


def _templates() -> None:
    """Runs with Django set up: a few real vends through the service, templates for the fill."""
    import django

    django.setup()
    from decimal import Decimal

    from partners.models import Partner
    from tokens.services import vend_create

    data = json.loads((STATE / f"{os.environ['BENCH_DB']}.json").read_text())
    partner = Partner.objects.get()
    for n, meter in enumerate(data["codes"][:5] + data["plain"][:5]):
        vend_create(partner=partner, meter_number=meter, amount=Decimal("100.00"), reference=f"TEMPLATE-{n}")


def _sql(db: str, statements: list[tuple[str, list | dict | None]], *, label: str) -> None:
    import psycopg2

    started = time.monotonic()
    conn = psycopg2.connect(url_for(db))
    with conn, conn.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
    conn.close()
    print(f"  {label}: {time.monotonic() - started:.1f} s", flush=True)


def fill(db: str, *, meters: int, vends: int, months: int, chunk: int) -> None:
    import datetime as dt

    import psycopg2

    from tokens import partitioning

    conn = psycopg2.connect(url_for(db))
    cursor = conn.cursor()
    cursor.execute("SELECT now()")
    now = cursor.fetchone()[0]
    first = partitioning.month_add(partitioning.month_start(now), 1 - months)
    for table in partitioning.HISTORY_TABLES:
        for month in partitioning.months_between(first, now):
            partitioning.partition_create(cursor, table, month)
    conn.commit()
    cursor.execute("SELECT max(id) FROM meters_meter")
    (last_meter,) = cursor.fetchone()
    conn.close()

    started = time.monotonic()
    if meters:
        # Extra meters from a template row (numbers outside the seeded ones; the load never vends them).
        _sql(db, [(
            "INSERT INTO meters_meter (meter_number, iin, sgc, ti, krn, kt, ea, dkga, base_date, ken, account_number, "
            "customer_name, phone, region, status, key_state, created_at, updated_at) "
            "SELECT '9' || lpad(g::text, 12, '0'), iin, sgc, ti, krn, kt, ea, dkga, base_date, ken, 'F' || g, "
            "customer_name, '+2541' || lpad(g::text, 8, '0'), region, status, key_state, created_at, updated_at "
            "FROM meters_meter t, generate_series(1, %s) g WHERE t.id = (SELECT min(id) FROM meters_meter)",
            [meters],
        )], label=f"{meters} meters")  # fmt: skip
        enrolled = meters // 7  # ~1 M enrollments for 7.4 M meters
        _sql(db, [(
            "INSERT INTO campaigns_enrollment (state, enrolled_at, notified_at, codes_issued_at, confirmed_at, "
            "failed_at, non_compliant_at, state_changed_at, note, batch_id, campaign_id, meter_id, origin) "
            "SELECT t.state, t.enrolled_at, t.notified_at, t.codes_issued_at, t.confirmed_at, t.failed_at, "
            "t.non_compliant_at, t.state_changed_at, t.note, t.batch_id, t.campaign_id, m.id, t.origin "
            "FROM campaigns_enrollment t, meters_meter m "
            "WHERE t.id = (SELECT min(id) FROM campaigns_enrollment) AND m.id > %s AND m.id <= %s",
            [last_meter, last_meter + enrolled],
        ), (
            "INSERT INTO tokens_keychangeset (meter_id, campaign_id, from_sgc, from_krn, from_base_date, to_sgc, "
            "to_krn, to_base_date, to_ken, rollover, codes, created_at) "
            "SELECT m.id, t.campaign_id, t.from_sgc, t.from_krn, t.from_base_date, t.to_sgc, t.to_krn, "
            "t.to_base_date, t.to_ken, t.rollover, t.codes, t.created_at FROM tokens_keychangeset t, meters_meter m "
            "WHERE t.id = (SELECT min(id) FROM tokens_keychangeset) AND m.id > %s AND m.id <= %s",
            [last_meter, last_meter + enrolled * 7 // 10],
        )], label=f"{enrolled} enrollments, {enrolled * 7 // 10} key change sets")  # fmt: skip
    meter_low, meter_count = (last_meter + 1, meters) if meters else (1, last_meter)
    per_month = vends // months
    replay_edge = now - dt.timedelta(days=7)
    g = 0
    for index in range(months):
        low = partitioning.month_add(first, index)
        high = min(partitioning.month_add(low, 1), now)
        done = 0
        while done < per_month:
            size = min(chunk, per_month - done)
            # Time runs forward through the month as real sales do; each vend with its reference,
            # its credit token and the token's digest, all in the vend's month.
            _sql(db, [(
                "WITH src AS (SELECT nextval('tokens_vend_id_seq') AS id, g, "
                "  %(low)s::timestamptz + ((g - %(g0)s)::float8 / %(count)s) "
                "  * (%(high)s::timestamptz - %(low)s::timestamptz) AS at, "
                "  %(m0)s + (hashint4(g) & 2147483647) %% %(nm)s AS meter_id "
                "  FROM generate_series(%(g0)s, %(g1)s) g), "
                "tv AS (SELECT * FROM tokens_vend WHERE reference = 'TEMPLATE-5' LIMIT 1), "
                "tt AS (SELECT * FROM tokens_issuedtoken WHERE vend_id = (SELECT id FROM tv)), "
                "r AS (INSERT INTO tokens_vendreference (partner_id, reference, vend_id, created_at) "
                "  SELECT tv.partner_id, 'F' || src.g, src.id, src.at FROM src, tv), "
                "v AS (INSERT INTO tokens_vend (id, public_id, partner_id, reference, fingerprint, meter_id, amount, "
                "  units, customer_phone, key_change_set_id, response_status, response_body, created_at) "
                "  SELECT src.id, gen_random_uuid(), tv.partner_id, 'F' || src.g, tv.fingerprint, src.meter_id, "
                "  tv.amount, tv.units, tv.customer_phone, NULL, 201, "
                "  CASE WHEN src.at < %(edge)s THEN '' ELSE tv.response_body END, src.at FROM src, tv), "
                "t AS (INSERT INTO tokens_issuedtoken (meter_id, vend_id, kind, token_class, subclass, sgc, krn, "
                "  base_date, tid, units, value, digits, issued_at, issued_by) "
                "  SELECT src.meter_id, src.id, tt.kind, tt.token_class, tt.subclass, tt.sgc, tt.krn, tt.base_date, "
                "  (src.g %% 1000000) * 1440 + 2, tt.units, NULL, "
                "  lpad((hashint8(src.g) & 99999999999)::text, 20, '7'), "
                "  src.at, tt.issued_by FROM src, tt RETURNING id, meter_id, issued_at) "
                "INSERT INTO care_tokendigest "
                "(digest, meter_id, issued_token_id, key_change_set_id, position, created_at) "
                "SELECT md5(t.id::text) || md5(t.id::text || 'x'), t.meter_id, t.id, NULL, NULL, t.issued_at FROM t",
                {"low": low, "high": high, "g0": g + 1, "g1": g + size, "count": per_month, "m0": meter_low,
                 "nm": meter_count, "edge": replay_edge},
            )], label=f"{low:%Y-%m}: vends {done + size}/{per_month}")  # fmt: skip
            g += size
            done += size
    _sql(db, [("ANALYZE", None)], label="analyze")
    _sql(db, [("CHECKPOINT", None)], label="checkpoint")
    print(f"fill: {time.monotonic() - started:.0f} s", flush=True)


def setup(args: argparse.Namespace) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    vend_load.admin_sql(f'DROP DATABASE IF EXISTS "{args.db}"')
    vend_load.admin_sql(f'CREATE DATABASE "{args.db}"')
    env = env_for(args.db)
    subprocess.run([vend_load.PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [vend_load.PYTHON, str(ROOT / "bench" / "vend_load.py"), "--meters", str(args.meters), "_seed"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    (STATE / f"{args.db}.json").write_text(seeded.stdout.strip().splitlines()[-1])
    subprocess.run([vend_load.PYTHON, __file__, "_templates"], cwd=ROOT, env={**env, "BENCH_DB": args.db}, check=True)
    if args.fill_vends or args.fill_meters:
        fill(args.db, meters=args.fill_meters, vends=args.fill_vends, months=args.months, chunk=args.chunk)
    vend_load.admin_sql(f'ALTER DATABASE "{args.db}" SET search_path = public')
    import psycopg2

    conn = psycopg2.connect(url_for(args.db))
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database())), (SELECT count(*) FROM tokens_vend)"
        )
        size, vends = cursor.fetchone()
    conn.close()
    print(f"setup {args.db}: {size}, {vends} vends")


# --- run ----------------------------------------------------------------------------------------------------


def _wal_bytes(db: str, start: str, end: str) -> tuple[int, int]:
    """WAL bytes (records touching this database's relations, full-page images included) and the
    full-page-image bytes among them, between two LSNs."""
    import psycopg2

    conn = psycopg2.connect(url_for(db))
    with conn.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        (oid,) = cursor.fetchone()
        cursor.execute(
            "SELECT COALESCE(sum(record_length), 0), COALESCE(sum(fpi_length), 0) "
            "FROM pg_get_wal_records_info(%s, %s) WHERE block_ref LIKE %s",
            [start, end, f"%rel 1663/{oid}/%"],
        )
        total, fpi = cursor.fetchone()
    conn.close()
    return int(total), int(fpi)


def _lsn(db: str) -> str:
    import psycopg2

    conn = psycopg2.connect(url_for(db))
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        (lsn,) = cursor.fetchone()
    conn.close()
    return lsn


def _wal_slot(db: str):
    """A session holding a temporary physical replication slot: the server keeps the round's WAL
    (other databases' traffic would otherwise recycle it before it is counted) until it closes."""
    import psycopg2

    conn = psycopg2.connect(url_for(db))
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", [f"bench_{os.getpid()}"])
    return conn


def one_round(db: str, args: argparse.Namespace) -> dict[str, float]:
    data = json.loads((STATE / f"{db}.json").read_text())
    slot = _wal_slot(db)
    env = env_for(db)
    port = vend_load.free_port()
    server = subprocess.Popen(
        [vend_load.GUNICORN, "kplc_sts.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers",
         str(args.workers), "--worker-class", "gthread", "--threads", str(args.threads), "--keep-alive", "30",
         "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("gunicorn did not come up")
        vend_load.workers_settle(server.pid, args.workers)
        cpu = vend_load.CpuMeter(server.pid, url_for(db))
        meters = {"codes": data["codes"], "plain": data["plain"]}
        holder: dict[str, str] = {}

        async def drive() -> tuple[vend_load.Stats, float, dict[str, float]]:
            # vend_load.drive measures CPU from the end of the warm-up; take the LSN at the same moment.
            async def mark() -> None:
                await asyncio.sleep(args.warmup)
                holder["start"] = _lsn(db)

            marker = asyncio.create_task(mark())
            result = await vend_load.drive(port, data["key"], meters, args.concurrency, args.warmup, args.duration, cpu)
            await marker
            holder["end"] = _lsn(db)
            return result

        stats, window, used = asyncio.run(drive())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    done = len(stats.latencies)
    try:
        wal, fpi = _wal_bytes(db, holder["start"], holder["end"])
    finally:
        slot.close()  # the temporary slot goes with its session
    ms = [x * 1000 for x in stats.latencies]
    return {
        "vends": done,
        "vends_s": done / window,
        "p99_ms": vend_load.percentile(ms, 0.99) if ms else float("nan"),
        "pg_cpu_ms": 1000 * used["postgres"] / max(done, 1),
        "wal_kb": wal / 1024 / max(done, 1),
        "fpi_kb": fpi / 1024 / max(done, 1),
        "app_cpu_ms": 1000 * used["gunicorn"] / max(done, 1),
        # Cores busy with anything but this round (PostgreSQL's background processes, autovacuum,
        # other people's work on the shared machine): a round it disturbed shows here.
        "rest_cores": (used["machine"] - used["gunicorn"] - used["postgres"] - used["redis"] - used["client"]) / window,
        "errors": sum(stats.errors.values()),
    }


def run(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, float]]] = {args.small: [], args.big: []}
    for index in range(args.rounds):
        order = [args.small, args.big] if index % 2 == 0 else [args.big, args.small]
        for db in order:
            result = one_round(db, args)
            results[db].append(result)
            print(f"round {index + 1} {db}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()), flush=True)
            subprocess.run(["redis-cli", "-u", vend_load.REDIS_URL, "flushdb"], capture_output=True)
    keys = ["vends_s", "p99_ms", "pg_cpu_ms", "app_cpu_ms", "wal_kb", "fpi_kb", "rest_cores"]
    median = {db: {k: statistics.median(r[k] for r in rows) for k in keys} for db, rows in results.items()}
    print(f"\nmedian of {args.rounds} rounds, {args.duration:.0f} s each after {args.warmup:.0f} s warm-up, "
          f"{args.concurrency} connections, gunicorn {args.workers}x{args.threads}")  # fmt: skip
    print(f"| per vend | {args.small} | {args.big} | ratio |\n|---|---:|---:|---:|")
    for k in keys:
        small, big = median[args.small][k], median[args.big][k]
        print(f"| {k} | {small:.2f} | {big:.2f} | {big / small if small else float('nan'):.2f} |")
    print(json.dumps({"rounds": results}, default=float))


def drop(args: argparse.Namespace) -> None:
    for db in args.db:
        vend_load.admin_sql(f'DROP DATABASE IF EXISTS "{db}"')
        (STATE / f"{db}.json").unlink(missing_ok=True)
        print(f"dropped {db}")


def cluster(args: argparse.Namespace) -> None:
    import shutil

    from tests.pgcluster import Cluster, cluster_root

    state = STATE / "cluster.json"
    if args.action == "start":
        STATE.mkdir(parents=True, exist_ok=True)
        root = cluster_root("kplc-history-pg-")
        conf = ROOT / "deploy" / "postgres" / "postgresql.conf"
        shutil.copy(conf, root / "tuned.conf")
        os.chmod(root / "tuned.conf", 0o644)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "shared_buffers": args.shared_buffers,
            "effective_cache_size": args.effective_cache_size,
            "maintenance_work_mem": "512MB",
            "autovacuum_work_mem": "256MB",
        }
        server = Cluster("tuned", root).initdb(settings, include=root / "tuned.conf").start()
        state.write_text(json.dumps({"root": str(root), "port": server.port}))
        print(f"export BENCH_PG_ADMIN_URL={server.url()}")
        return
    if not state.exists():
        raise SystemExit("no cluster started by this bench")
    saved = json.loads(state.read_text())
    Cluster("tuned", Path(saved["root"]), port=saved["port"]).stop()
    shutil.rmtree(saved["root"], ignore_errors=True)
    state.unlink()
    print(f"stopped and removed {saved['root']}")


def main() -> None:
    if sys.argv[1:2] == ["_templates"]:
        _templates()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup")
    p.add_argument("--db", required=True)
    p.add_argument("--meters", type=int, default=2000, help="meters the load vends to")
    p.add_argument("--fill-meters", type=int, default=0)
    p.add_argument("--fill-vends", type=int, default=0)
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--chunk", type=int, default=250_000)
    p = sub.add_parser("run")
    p.add_argument("--small", required=True)
    p.add_argument("--big", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("drop")
    p.add_argument("--db", action="append", required=True)
    p = sub.add_parser("cluster")
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--shared-buffers", default="6GB", help="the file says 8GB for a 32 GB server")
    p.add_argument("--effective-cache-size", default="16GB")
    args = parser.parse_args()
    {"setup": setup, "run": run, "drop": drop, "cluster": cluster}[args.command](args)


if __name__ == "__main__":
    main()
