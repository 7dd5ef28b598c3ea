"""The vend path on a stock PostgreSQL 15 against deploy/postgres/postgresql.conf, side by side.

    .venv/bin/python bench/pg_tuning.py                           # 2 rounds of 60 s each way
    .venv/bin/python bench/pg_tuning.py --duration 15 --rounds 1   # quick check

It starts two throwaway clusters on free ports in /tmp, both with fsync on, on the same disk:
`stock` (initdb's defaults: what the compose file ran before) and `tuned` (includes the shipped
file, with its memory lines scaled to this shared machine: --shared-buffers, --effective-cache-size).
Each gets a database migrated and seeded by bench/vend_load.py's seed (--meters meters, half of them
carrying update codes) and its own gunicorn (production settings, 4 workers x 2 threads). The
measured windows then alternate stock, tuned, stock, tuned... so that the machine's other work
falls on both alike. Before each window: CHECKPOINT and a reset of pg_stat_wal, so both start right
after a checkpoint, where each page's first change writes a full-page image. Reported per window
and as tuned/stock ratios of the medians: vends/s, p50/p99, WAL bytes, records and full-page images
per vend, PostgreSQL CPU per vend, and the checkpoints each server started inside the window.

Both clusters are stopped and their directories removed at the end. Redis: BENCH_REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from vend_load import CpuMeter, _cpu_seconds, drive, percentile  # noqa: E402

from tests.pgcluster import Cluster, cluster_root, free_port  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
CONF = ROOT / "deploy" / "postgres" / "postgresql.conf"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
DB = "kplc_bench"


def start_server(
    cluster: Cluster, env: dict[str, str], meters: int, workers: int
) -> tuple[subprocess.Popen[bytes], int, dict[str, Any]]:
    cluster.query(f"CREATE DATABASE {DB}")
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [PYTHON, ROOT / "bench" / "vend_load.py", "--meters", str(meters), "_seed"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(seeded.stdout.strip().splitlines()[-1])
    cluster.query("VACUUM ANALYZE", db=DB)
    port = free_port()
    server = subprocess.Popen(
        [GUNICORN, "kplc_sts.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        + ["--worker-class", "gthread", "--threads", "2", "--keep-alive", "30", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        raise SystemExit("gunicorn did not come up")
    return server, port, data


def wal_stats(cluster: Cluster, *, settle: float = 0.0) -> dict[str, float]:
    """WAL position (exact) and pg_stat_wal's counters. Backends publish their counters when idle for
    a second or at exit, so a reading after work waits `settle` seconds first."""
    time.sleep(settle)
    row = cluster.query(
        "SELECT wal_records, wal_fpi, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'),"
        " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) FROM pg_stat_wal"
    )[0]
    return {"records": float(row[0]), "fpi": float(row[1]), "bytes": float(row[2]), "checkpoints": float(row[3])}  # type: ignore[arg-type]


def window(
    cluster: Cluster, server: subprocess.Popen[bytes], port: int, data: dict[str, Any], args: argparse.Namespace
) -> dict[str, float]:
    meters = {"codes": data["codes"], "plain": data["plain"]}
    # Warm up first (connections, caches), then the checkpoint, then a window in which every vend
    # and every byte of WAL counts.
    asyncio.run(
        drive(port, data["key"], meters, args.concurrency, 0, args.warmup, CpuMeter(server.pid, cluster.url(DB)))
    )
    cluster.query("CHECKPOINT")
    cluster.query("SELECT pg_stat_reset_shared('wal')")
    before = wal_stats(cluster)
    cpu = CpuMeter(server.pid, cluster.url(DB))
    stats, seconds, used = asyncio.run(drive(port, data["key"], meters, args.concurrency, 0, args.duration, cpu))
    after = wal_stats(cluster, settle=2.0)
    vends = len(stats.latencies)
    ms = [x * 1000 for x in stats.latencies]
    return {
        "vends_per_s": vends / seconds,
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 0.99),
        "postgres_cpu_ms_per_vend": 1000 * used["postgres"] / max(vends, 1),
        "checkpoints": after["checkpoints"] - before["checkpoints"],
        "errors": sum(stats.errors.values()),
        "_wal": after["bytes"] - before["bytes"],
        "_records": after["records"] - before["records"],
        "_fpi": after["fpi"] - before["fpi"],
        "_vends": vends,
    }


def probe_build(cluster: Cluster, rows: int) -> float:
    """A random-keyed btree index like the token digests' (64 hex characters of an HMAC) with
    `rows` entries; returns its size in MB."""
    cluster.query("DROP TABLE IF EXISTS fpi_probe")
    cluster.query("CREATE TABLE fpi_probe (digest varchar(64) NOT NULL)")
    cluster.query(
        "INSERT INTO fpi_probe SELECT encode(sha256(i::text::bytea), 'hex') FROM generate_series(1, %s) AS i", (rows,)
    )
    cluster.query("CREATE INDEX fpi_probe_digest ON fpi_probe (digest)")
    cluster.query("VACUUM ANALYZE fpi_probe")
    return float(cluster.query("SELECT pg_relation_size('fpi_probe_digest') / 1048576.0")[0][0])  # type: ignore[arg-type]


def fpi_probe(cluster: Cluster, inserts: int, intervals: int, compression: str | None = None) -> dict[str, float]:
    """The mechanism behind a vend's WAL at full size, isolated: `inserts` random single-row inserts
    into the probe index, split over `intervals` checkpoint intervals. The first change of a leaf
    after a checkpoint writes its full-page image: more checkpoints for the same inserts, more
    images; wal_compression (the server's, or `compression` for this session) shrinks each image."""
    conn = cluster.connect()
    before: dict[str, float] = {}
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")  # the same WAL, without a flush per insert
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
            if compression:
                cursor.execute("SELECT set_config('wal_compression', %s, false)", [compression])
            for interval in range(intervals):
                cursor.execute("CHECKPOINT")
                if interval == 0:
                    cursor.execute("SELECT pg_stat_reset_shared('wal')")
                    before = wal_stats(cluster)
                    cpu_before = _cpu_seconds(backend)
                for _ in range(inserts // intervals):
                    cursor.execute("INSERT INTO fpi_probe VALUES (md5(random()::text) || md5(random()::text))")
            cpu_used = _cpu_seconds(backend) - cpu_before
    finally:
        conn.close()
    after = wal_stats(cluster, settle=1.0)
    done = (inserts // intervals) * intervals
    return {
        "wal_kb_per_insert": (after["bytes"] - before["bytes"]) / 1024 / done,
        "fpi_per_insert": (after["fpi"] - before["fpi"]) / done,
        # The inserting backend's CPU (it compresses its own full-page images), checkpoints included.
        "cpu_us_per_insert": 1e6 * cpu_used / done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--shared-buffers", default="2GB", help="the tuned cluster's (the file says 8GB for 32 GB)")
    parser.add_argument("--effective-cache-size", default="8GB")
    parser.add_argument("--probe-rows", type=int, default=2_000_000, help="random-keyed index size (0: no probe)")
    parser.add_argument("--probe-inserts", type=int, default=24_000)
    args = parser.parse_args()

    root = cluster_root("kplc-pgtuning-")
    shutil.copy(CONF, root / "tuned.conf")
    os.chmod(root / "tuned.conf", 0o644)
    clusters = {
        "stock": Cluster("stock", root).initdb(),
        "tuned": Cluster("tuned", root).initdb(
            {
                "listen_addresses": "'127.0.0.1'",
                "shared_buffers": args.shared_buffers,
                "effective_cache_size": args.effective_cache_size,
                "maintenance_work_mem": "256MB",
                "autovacuum_work_mem": "128MB",
            },
            include=root / "tuned.conf",
        ),
    }
    servers: dict[str, tuple[subprocess.Popen[bytes], int, dict[str, Any]]] = {}
    results: dict[str, list[dict[str, float]]] = {"stock": [], "tuned": []}
    try:
        for name, cluster in clusters.items():
            cluster.start()
            env = dict(
                os.environ,
                DATABASE_URL=cluster.url(DB),
                DJANGO_SETTINGS_MODULE="kplc_sts.settings.production",
                DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
                STS_KEK=secrets.token_hex(32),
                # Production refuses demo values; no SMS is sent (no worker), plain HTTP on loopback.
                AT_API_URL="https://api.africastalking.com",
                AT_API_KEY=secrets.token_urlsafe(32),
                SMS_DELIVERY_REPORT_SECRET=secrets.token_urlsafe(32),
                USSD_CALLBACK_SECRET=secrets.token_urlsafe(32),
                DJANGO_SECURE_SSL_REDIRECT="0",
                CACHE_URL=REDIS_URL,
                CELERY_BROKER_URL=REDIS_URL,
                LOG_LEVEL="WARNING",
                DJANGO_ALLOWED_HOSTS="127.0.0.1",
                PYTHONPATH=str(ROOT),
            )
            servers[name] = start_server(cluster, env, args.meters, args.workers)
            settings = cluster.query(
                "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings"
                " WHERE name IN ('shared_buffers','max_wal_size','checkpoint_timeout','wal_compression',"
                "'synchronous_commit','wal_buffers','checkpoint_completion_target')"
            )[0][0]
            print(f"{name}: port {cluster.port}: {settings}", flush=True)
        for round_number in range(1, args.rounds + 1):
            for name in ("stock", "tuned"):
                server, port, data = servers[name]
                result = window(clusters[name], server, port, data, args)
                results[name].append(result)
                n = max(result["_vends"], 1)
                print(
                    f"round {round_number} {name:5s}: {result['vends_per_s']:6.1f} vends/s"
                    f"  p50 {result['p50_ms']:5.1f} ms  p99 {result['p99_ms']:6.1f} ms"
                    f"  WAL {result['_wal'] / 1024 / n:5.1f} kB/vend  FPI {result['_fpi'] / n:5.2f}/vend"
                    f"  PG CPU {result['postgres_cpu_ms_per_vend']:.2f} ms/vend"
                    f"  checkpoints {result['checkpoints']:.0f}  errors {result['errors']:.0f}",
                    flush=True,
                )
        if args.probe_rows:
            for name in ("stock", "tuned"):
                size = probe_build(clusters[name], args.probe_rows)
                print(f"probe index on {name}: {args.probe_rows} random digests, {size:.0f} MB", flush=True)
            # Checkpoint spacing: 15 min between checkpoints (tuned) against 5 min (stock) at one
            # vend rate is the same inserts over 1 interval against 3; each server both ways.
            # Compression: one interval each way on the tuned server, set per session.
            cases: list[tuple[str, int, str | None]] = [
                ("stock", 3, None),
                ("tuned", 1, None),
                ("stock", 1, None),
                ("tuned", 3, None),
                ("tuned", 1, "off"),
                ("tuned", 1, "lz4"),
                ("tuned", 1, "zstd"),
            ]
            for name, intervals, compression in cases:
                found = fpi_probe(clusters[name], args.probe_inserts, intervals, compression)
                label = compression or clusters[name].query("SHOW wal_compression")[0][0]
                print(
                    f"probe {name:5s} {intervals} checkpoint interval(s), wal_compression={label}:"
                    f" {found['wal_kb_per_insert']:.2f} kB WAL and {found['fpi_per_insert']:.3f} full-page images"
                    f" per random insert, backend CPU {found['cpu_us_per_insert']:.0f} us per insert",
                    flush=True,
                )
    finally:
        for server, _port, _data in servers.values():
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
        for cluster in clusters.values():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], capture_output=True)

    def median(name: str, key: str) -> float:
        if key.startswith("per_vend:"):
            field = key.split(":", 1)[1]
            return statistics.median(r[field] / max(r["_vends"], 1) for r in results[name])
        return statistics.median(r[key] for r in results[name])

    print(f"\nmedians over {args.rounds} round(s) of {args.duration:.0f} s, {args.concurrency} connections:")
    print(f"{'':28s}{'stock':>10s}{'tuned':>10s}{'tuned/stock':>13s}")
    for label, key, scale in (
        ("vends/s", "vends_per_s", 1),
        ("p50 ms", "p50_ms", 1),
        ("p99 ms", "p99_ms", 1),
        ("WAL kB per vend", "per_vend:_wal", 1 / 1024),
        ("WAL records per vend", "per_vend:_records", 1),
        ("full-page images per vend", "per_vend:_fpi", 1),
        ("PostgreSQL CPU ms per vend", "postgres_cpu_ms_per_vend", 1),
    ):
        stock, tuned = median("stock", key) * scale, median("tuned", key) * scale
        print(f"{label:28s}{stock:10.2f}{tuned:10.2f}{tuned / stock if stock else float('nan'):13.2f}")


if __name__ == "__main__":
    main()
