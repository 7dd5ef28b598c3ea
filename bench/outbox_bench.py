"""Outbox benchmark (issue 16): a long notice send with delivery reports, fifth by fifth, and what
it leaves behind in the outbox (size, dead tuples, HOT updates).

    .venv/bin/python bench/outbox_bench.py [--notices 100000] [--workers 2] [--concurrency 2]
        [--code DIR ...]

Each `--code DIR` is a checkout whose code is run (default: this one); with several, each runs
in turn in its own database and the summary compares them side by side, e.g.
`--code /work/main --code .` for main's outbox against this branch's. A checkout is only read.

Per run: a fresh database (BENCH_DATABASE_URL's name + a suffix), `migrate`, N meters generated
in SQL, one batch of N notices, then the real stack: gunicorn serving the delivery-report
endpoint, the local Africa's Talking-like gateway posting a report 0.5 s after each accepted
message, `--workers` Celery workers (`-c --concurrency`, queues sms_notices, sms_codes, celery)
and beat (its sweep; on this branch also the mover, every SMS_LOG_MOVE_EVERY_SECONDS). The send
is timed from the batch's tally (`MessageTally.sent`, one row, so polling costs nothing): the
time each fifth of the notices took, in msg/s. Around the send: sms_message's heap and index
sizes, live and dead tuples, and its updates and HOT updates from pg_stat_user_tables (reset just
before the send); on this branch also the log's size.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "bench"))
from campaign_bench import _admin_sql, _free_port  # noqa: E402  (the same scratch-database helpers)


def _table_stats(cursor: Any, table: str) -> dict[str, Any]:
    cursor.execute(
        "SELECT pg_relation_size(%s::regclass), pg_indexes_size(%s::regclass), "
        "COALESCE(n_live_tup, 0), COALESCE(n_dead_tup, 0), COALESCE(n_tup_upd, 0), COALESCE(n_tup_hot_upd, 0), "
        "COALESCE(n_tup_del, 0), (SELECT COUNT(*) FROM pg_indexes WHERE tablename = %s) "
        "FROM pg_stat_user_tables WHERE relid = %s::regclass",
        [table, table, table, table],
    )
    heap, indexes, live, dead, upd, hot, deleted, index_count = cursor.fetchone()
    cursor.execute(f"SELECT COUNT(*) FROM {table}")
    rows = cursor.fetchone()[0]
    return {
        "heap_kb": heap // 1024,
        "indexes_kb": indexes // 1024,
        "rows": rows,
        "live": live,
        "dead": dead,
        "updates": upd,
        "hot_updates": hot,
        "deleted": deleted,
        "index_count": index_count,
    }


def _autovacuum_wait(cursor: Any, table: str, seconds: float) -> float:
    """Wait (up to `seconds`) for autovacuum to finish a run on `table`; the seconds waited."""
    query = "SELECT autovacuum_count FROM pg_stat_user_tables WHERE relid = %s::regclass"
    cursor.execute(query, [table])
    vacuums = cursor.fetchone()[0]
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        cursor.execute(query, [table])
        if cursor.fetchone()[0] > vacuums:
            break
        time.sleep(1)
    time.sleep(2)  # its statistics reach pg_stat_user_tables within a second or so
    return round(time.monotonic() - started, 1)


def _log_stats(cursor: Any) -> dict[str, Any] | None:
    cursor.execute("SELECT to_regclass('sms_messagelog') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return None
    cursor.execute(
        "SELECT COALESCE(SUM(pg_relation_size(c.oid)), 0), COALESCE(SUM(pg_indexes_size(c.oid)), 0) "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'sms_messagelog'::regclass"
    )
    heap, indexes = cursor.fetchone()
    cursor.execute("SELECT COUNT(*) FROM sms_messagelog")
    return {"heap_kb": int(heap) // 1024, "indexes_kb": int(indexes) // 1024, "rows": cursor.fetchone()[0]}


def run_one(args: argparse.Namespace, code: Path, db_suffix: str) -> dict[str, Any]:
    """One run with the code of `code`, in this process (Django is set up from that checkout)."""
    sys.path.insert(0, str(code))
    base = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kplc_l16_bench")
    parts = urllib.parse.urlparse(base)
    db_name = parts.path.lstrip("/") + db_suffix
    url = urllib.parse.urlunparse(parts._replace(path="/" + db_name))
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")
    _admin_sql(url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    _admin_sql(url, f'CREATE DATABASE "{db_name}"')
    os.environ.update(
        DJANGO_SETTINGS_MODULE="kplc_sts.settings.base",
        DATABASE_URL=url,
        SMS_BACKEND="sms.backends.memory.MemoryBackend",
        LOG_LEVEL="WARNING",
        # The mover (this branch only; main ignores these): settled rows leave after 10 clock
        # seconds, a pass every 5 s.
        SMS_LOG_GRACE_SECONDS=str(args.grace),
        SMS_LOG_MOVE_EVERY_SECONDS="5",
    )
    import django

    django.setup()
    import datetime as dt

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Sum
    from django.utils import timezone

    from campaigns.services import batch_notices_create, batch_schedule, campaign_create
    from sms.models import Message, MessageTally

    sys.path.insert(0, str(code / "bench"))
    from campaign_bench import METERS_SQL

    processes: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"code": str(code), "notices": args.notices}
    try:
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            if args.fillfactor:
                cursor.execute(f"ALTER TABLE sms_message SET (fillfactor = {int(args.fillfactor)})")
            cursor.execute(METERS_SQL, [args.notices])
            cursor.execute("ANALYZE meters_meter")
            result["outbox_empty"] = _table_stats(cursor, "sms_message")
        campaign = campaign_create(
            name="Bench", sgcs=["600675"], from_krn=1, to_krn=2, deadline=dt.date(2030, 8, 31), daily_capacity=10**7
        )
        batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=args.notices, scheduled_at=timezone.now())
        created = batch_notices_create(batch=batch)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE sms_message")
            time.sleep(1.5)
            result["before_send"] = _table_stats(cursor, "sms_message")
            cursor.execute("SELECT pg_stat_reset_single_table_counters('sms_message'::regclass)")
        port, web_port = _free_port(), _free_port()
        callback = f"http://127.0.0.1:{web_port}/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
        env = {
            **os.environ,
            "CELERY_BROKER_URL": redis_url,
            "SMS_BACKEND": "sms.backends.africastalking.AfricasTalkingBackend",
            "AT_API_URL": f"http://127.0.0.1:{port}",
            "SMS_SEND_RATE": "100000",
            "SMS_RATE_REDIS_URL": redis_url,
        }
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        gunicorn = ["-m", "gunicorn", "kplc_sts.wsgi:application", "-b", f"127.0.0.1:{web_port}", "-k", "gthread"]
        commands = [
            [*gunicorn, "-w", "1", "--threads", "4", "--keep-alive", "30"],
            ["manage.py", "fake_africastalking", "--port", str(port), "--callback", callback, "--dlr-delay", "0.5"],
            ["-m", "celery", "-A", "kplc_sts", "beat", "-l", "WARNING", "-s", f"/tmp/outbox-bench-beat{db_suffix}"],
        ]
        for index in range(args.workers):
            commands.append(
                ["-m", "celery", "-A", "kplc_sts", "worker", "-Q", "sms_notices,sms_codes,celery"]
                + ["-c", str(args.concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat"]
                + ["-n", f"bench{index}{db_suffix}@%h", "-l", "WARNING"]
            )
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        for command in commands:
            processes.append(
                subprocess.Popen([sys.executable, *command], cwd=code, env=env, start_new_session=True, **quiet)
            )
        time.sleep(8)  # start-up is not part of the send
        from kplc_sts.celery import app

        app.conf.update(task_always_eager=False, broker_url=redis_url)
        from sms.services import message_dispatch

        ids = list(Message.objects.filter(batch_id=batch.pk).order_by("pk").values_list("pk", flat=True))
        assert len(ids) == created == args.notices, (len(ids), created)
        tally = MessageTally.objects.filter(batch_id=batch.pk)
        marks = [args.notices * k // 5 for k in range(1, 6)]
        crossed: list[float] = []
        started = time.perf_counter()
        for start in range(0, len(ids), 100):
            message_dispatch(ids[start : start + 100], queue=settings.SMS_NOTICE_QUEUE)
        sent = delivered = 0
        while time.perf_counter() - started < args.timeout:
            row = tally.aggregate(sent=Sum("sent"), delivered=Sum("delivered"))
            sent, delivered = row["sent"] or 0, row["delivered"] or 0
            while len(crossed) < 5 and sent >= marks[len(crossed)]:
                crossed.append(time.perf_counter() - started)
            if len(crossed) == 5 and (
                delivered >= args.notices or time.perf_counter() - started > crossed[-1] + args.settle_wait
            ):
                break
            time.sleep(0.2)
        settled_s = time.perf_counter() - started
        fifth = args.notices / 5
        edges = [0.0, *crossed]
        rates = [fifth / (edges[k + 1] - edges[k]) for k in range(len(crossed))]
        result.update(
            sent=sent,
            delivered=delivered,
            send_s=crossed[-1] if len(crossed) == 5 else None,
            settled_s=settled_s,
            fifths_msg_s=[round(rate, 1) for rate in rates],
            last_over_first=round(rates[-1] / rates[0], 3) if len(rates) == 5 else None,
        )
        with connection.cursor() as cursor:
            time.sleep(2)  # statistics reach pg_stat_user_tables within a second or so
            result["after_send"] = _table_stats(cursor, "sms_message")
            # This branch's mover: wait until it has taken every settled message (grace + a pass).
            deadline = time.monotonic() + args.grace + 60
            while _log_stats(cursor) is not None and time.monotonic() < deadline:
                cursor.execute("SELECT COUNT(*) FROM sms_message WHERE status NOT IN ('delivered','failed','rejected')")
                unsettled = cursor.fetchone()[0]
                cursor.execute("SELECT COUNT(*) FROM sms_message")
                if cursor.fetchone()[0] <= unsettled:
                    break
                time.sleep(1)
            time.sleep(2)
            result["after_move"] = _table_stats(cursor, "sms_message")
            cursor.execute(
                "SELECT COUNT(*) FROM sms_message WHERE status NOT IN ('delivered', 'failed', 'rejected', 'cancelled')"
            )
            result["unsettled"] = cursor.fetchone()[0]
            # Autovacuum on its own (the table's thresholds, the server's naptime): what the outbox
            # is left at in production, without anyone running VACUUM.
            result["autovacuum_waited_s"] = _autovacuum_wait(cursor, "sms_message", args.autovacuum_wait)
            result["after_autovacuum"] = _table_stats(cursor, "sms_message")
            cursor.execute("VACUUM sms_message")
            time.sleep(1.5)
            result["after_vacuum"] = _table_stats(cursor, "sms_message")
            result["log"] = _log_stats(cursor)
            cursor.execute("SELECT pg_total_relation_size('sms_deliveryreport'::regclass)")
            result["deliveryreport_total_kb"] = cursor.fetchone()[0] // 1024
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(20)
            except Exception:  # noqa: BLE001
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except Exception:  # noqa: BLE001
                    pass
        connection.close()
        if not args.keep:
            _admin_sql(url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return result


def _summary(results: list[dict[str, Any]]) -> None:
    def hot(stats: dict[str, Any]) -> str:
        return f"{stats['hot_updates'] / stats['updates']:.2f}" if stats["updates"] else "-"

    rows = [
        ("msg/s per fifth", lambda r: " / ".join(f"{rate:,.0f}" for rate in r["fifths_msg_s"])),
        ("last fifth / first", lambda r: str(r["last_over_first"])),
        ("send s (all accepted)", lambda r: f"{r['send_s']:.1f}" if r["send_s"] else "-"),
        ("delivered (reports applied) at the end", lambda r: f"{r['delivered']:,}"),
        ("indexes on sms_message", lambda r: str(r["before_send"]["index_count"])),
        (
            "outbox heap kB: empty / notices written / after send",
            lambda r: (
                f"{r['outbox_empty']['heap_kb']:,} / {r['before_send']['heap_kb']:,} / {r['after_send']['heap_kb']:,}"
            ),
        ),
        (
            "outbox heap kB after the mover / after autovacuum (s waited) / after VACUUM",
            lambda r: (
                f"{r['after_move']['heap_kb']:,} / {r['after_autovacuum']['heap_kb']:,} "
                f"({r['autovacuum_waited_s']}) / {r['after_vacuum']['heap_kb']:,}"
            ),
        ),
        (
            "outbox indexes kB: written / after send / after VACUUM",
            lambda r: (
                f"{r['before_send']['indexes_kb']:,} / {r['after_send']['indexes_kb']:,} / "
                f"{r['after_vacuum']['indexes_kb']:,}"
            ),
        ),
        ("outbox rows after send / unsettled", lambda r: f"{r['after_move']['rows']:,} / {r['unsettled']:,}"),
        ("dead tuples after send", lambda r: f"{r['after_send']['dead']:,}"),
        (
            "updates / HOT / HOT ratio",
            lambda r: f"{r['after_send']['updates']:,} / {r['after_send']['hot_updates']:,} / {hot(r['after_send'])}",
        ),
        (
            "log rows / heap kB / indexes kB",
            lambda r: (
                f"{r['log']['rows']:,} / {r['log']['heap_kb']:,} / {r['log']['indexes_kb']:,}"
                if r["log"]
                else "(no log)"
            ),
        ),
    ]
    names = [Path(r["code"]).name or r["code"] for r in results]
    print("| " + " | ".join(["", *names]) + " |")
    print("|" + "---|" * (len(names) + 1))
    for label, render in rows:
        print("| " + " | ".join([label, *(render(r) for r in results)]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notices", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--grace", type=float, default=10, help="SMS_LOG_GRACE_SECONDS for the run")
    parser.add_argument("--fillfactor", type=int, help="override sms_message's fillfactor (experiments)")
    parser.add_argument("--settle-wait", type=float, default=60, help="seconds to wait for reports after the send")
    parser.add_argument(
        "--autovacuum-wait", type=float, default=120, help="seconds to wait for autovacuum after the mover"
    )
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--code", action="append", type=Path, help="checkout to run (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run --code[one] here
    args = parser.parse_args()
    codes = [code.resolve() for code in (args.code or [HERE])]
    if args.one is not None:
        print("RESULT " + json.dumps(run_one(args, codes[args.one], f"_{args.one}")), flush=True)
        return
    results = []
    for index, code in enumerate(codes):
        # Each checkout in its own process: Django is set up once per process, from that checkout.
        command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--one", str(index)]
        for position, arg in enumerate(command):
            if command[position - 1] == "--code":
                command[position] = str(Path(arg).resolve())
        # cwd: the project's settings put the working directory first on sys.path.
        completed = subprocess.run(command, capture_output=True, text=True, cwd=code)
        if completed.returncode:
            print(completed.stdout[-3000:], completed.stderr[-5000:], file=sys.stderr)
            raise SystemExit(f"run {index} ({code}) failed")
        output = completed.stdout
        line = next(line for line in output.splitlines() if line.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT ") :]))
        print(json.dumps(results[-1]), flush=True)
    _summary(results)


if __name__ == "__main__":
    main()
