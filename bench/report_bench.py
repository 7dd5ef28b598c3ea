"""Delivery-report handler cost, one variant of the report statement against another, in one process.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/kplc_rep .venv/bin/python bench/report_bench.py \
        [--rounds 6] [--chunk 2000] [--variants current,...]

Needs a database that `bench/campaign_bench.py --keep` left behind (a batch with its notices): the
queued notices are marked sent with a provider id, then each variant settles its own disjoint
chunk of them through the view (RequestFactory: the form, the callback guard, the statement; no
middleware, no HTTP), in rotated order each round. Per report it prints the wall time, this
process's CPU and the PostgreSQL backend's CPU (from /proc), which is what a gunicorn worker and
its connection spend on a report. Variants replace `sms._pg._report_statement` only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--variants", default="")
    args = parser.parse_args()
    os.environ.update(
        DJANGO_SETTINGS_MODULE=os.environ.get("BENCH_SETTINGS", "kplc_sts.settings.base"),
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kplc_rep"),
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import RequestFactory

    from sms import _pg
    from sms.views import delivery_report

    variants: dict[str, Callable[..., Any]] = {"current": _pg._report_statement, **_alternatives(_pg)}
    chosen = [name for name in (args.variants.split(",") if args.variants else variants)]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE sms_message SET status = 'sent', provider_message_id = 'BENCH-' || id, sent_at = now() "
            "WHERE status = 'queued'"
        )
        cursor.execute("VACUUM ANALYZE sms_message")
        cursor.execute("SELECT provider_message_id FROM sms_message WHERE status = 'sent' ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    needed = args.rounds * len(chosen) * args.chunk
    if len(ids) < needed:
        raise SystemExit(f"{len(ids):,} sent messages, {needed:,} needed")
    factory = RequestFactory()
    secret = settings.SMS_DELIVERY_REPORT_SECRET
    path = f"/sms/delivery-reports/{secret}/"
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in chosen}
    cursor_at = 0
    for round_index in range(args.rounds):
        order = chosen[round_index % len(chosen) :] + chosen[: round_index % len(chosen)]
        for name in order:
            _pg._report_statement = variants[name]
            chunk = ids[cursor_at : cursor_at + args.chunk]
            cursor_at += args.chunk
            wall, cpu, pg = time.perf_counter(), time.process_time(), _backend_cpu(backend)
            for provider_id in chunk:
                # Form-urlencoded, as Africa's Talking (and sms.fake_gateway) posts a report.
                request = factory.post(
                    path,
                    urllib.parse.urlencode(
                        {"id": provider_id, "status": "Success", "phoneNumber": "+254700000001", "networkCode": "63902"}
                    ),
                    content_type="application/x-www-form-urlencoded",
                )
                response = delivery_report(request, secret=secret)
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {response.status_code} {response.content!r}")
            per = 1000 / len(chunk)
            results[name].append(
                (
                    (time.perf_counter() - wall) * per,
                    (time.process_time() - cpu) * per,
                    (_backend_cpu(backend) - pg) * per,
                )
            )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sms_message WHERE status = 'delivered'")
        print(f"delivered now: {cursor.fetchone()[0]:,}")
    base = None
    print("variant            wall ms   python ms   postgres ms   (means over rounds; ratio to the first)")
    for name in chosen:
        wall, cpu, pg = (statistics.mean(column) for column in zip(*results[name], strict=True))
        base = base or (wall, cpu, pg)
        print(
            f"{name:16} {wall:8.3f} ({wall / base[0]:.2f}) {cpu:8.3f} ({cpu / base[1]:.2f}) "
            f"{pg:8.3f} ({pg / base[2]:.2f})"
        )


def _alternatives(_pg: Any) -> dict[str, Callable[..., Any]]:
    from django.db import connection

    from sms.tallies import TALLY_SHARD_SQL

    def before(report_values, final, failure_reason, at, log_since, *, spare_codes):  # type: ignore[no-untyped-def]
        """The statement of 2026-12-04 (b87d7a7): a codes CTE and the log probe inside."""
        return _statement(report_values, final, failure_reason, at, spare_codes=spare_codes, log_probe=True)

    def no_log_probe(report_values, final, failure_reason, at, log_since, *, spare_codes):  # type: ignore[no-untyped-def]
        """The current statement without the log probe (look_in_log from `known` alone)."""
        return _statement(report_values, final, failure_reason, at, spare_codes=spare_codes, log_probe=False)

    def no_codes(report_values, final, failure_reason, at, log_since, *, spare_codes):  # type: ignore[no-untyped-def]
        """Without the codes CTE (as if spare_codes were never asked)."""
        return _statement(report_values, final, failure_reason, at, spare_codes=False, log_probe=True)

    def minimal(report_values, final, failure_reason, at, log_since, *, spare_codes):  # type: ignore[no-untyped-def]
        """Base's shape: known, settled, report, tally; no codes, no log probe."""
        return _statement(report_values, final, failure_reason, at, spare_codes=False, log_probe=False)

    def _statement(report_values, final, failure_reason, at, *, spare_codes, log_probe):  # type: ignore[no-untyped-def]
        messages, reports, tallies, log = _pg._MESSAGES, _pg._REPORTS, _pg._TALLIES, _pg._LOG
        provider_message_id = report_values[0]
        column = "delivered" if final == "delivered" else "failed"
        spare = "AND NOT EXISTS (SELECT 1 FROM codes)" if spare_codes else ""
        where_spare = "WHERE NOT EXISTS (SELECT 1 FROM codes)" if spare_codes else ""
        codes_cte = (
            f"codes AS (SELECT 1 FROM {messages} WHERE provider_message_id = %s AND purpose = 'codes' AND %s), "
            if spare_codes
            else ""
        )
        probe = (
            f"EXISTS (SELECT 1 FROM {log} WHERE provider_message_id = %s AND status = 'sent')" if log_probe else "false"
        )
        codes_out = "EXISTS (SELECT 1 FROM codes)" if spare_codes else "false"
        sql = (
            f"WITH {codes_cte}known AS (SELECT 1 FROM {messages} WHERE provider_message_id = %s), "
            f"settled AS (UPDATE {messages} SET status = %s, failure_reason = %s, delivered_at = %s "
            f"WHERE provider_message_id = %s AND status IN ('sending', 'sent', 'queued') {spare} "
            "RETURNING batch_id, purpose, meter_id), "
            f"report AS (INSERT INTO {reports} (provider_message_id, status, failure_reason, phone_number, "
            "network_code, retry_count, received_at, applied_at) "
            "SELECT %s, %s, %s, %s, %s, %s::smallint, %s::timestamptz, "
            f"CASE WHEN EXISTS (SELECT 1 FROM known) THEN %s::timestamptz END {where_spare} "
            "ON CONFLICT (provider_message_id) DO UPDATE SET status = EXCLUDED.status, "
            "failure_reason = EXCLUDED.failure_reason, applied_at = EXCLUDED.applied_at "
            f"WHERE {reports}.status NOT IN ('Success', 'Failed', 'Rejected') RETURNING 1), "
            f"tallied AS (INSERT INTO {tallies} (batch_id, shard, sent, delivered, failed) "
            f"SELECT batch_id, {TALLY_SHARD_SQL}, 0, {int(column == 'delivered')}, {int(column == 'failed')} "
            "FROM settled WHERE batch_id IS NOT NULL "
            f"ON CONFLICT (batch_id, shard) DO UPDATE SET {column} = {tallies}.{column} + 1 "
            "RETURNING 1) "
            "SELECT purpose, meter_id, NULL, NULL FROM settled UNION ALL "
            "SELECT NULL, NULL, NOT EXISTS (SELECT 1 FROM settled) AND CASE WHEN EXISTS (SELECT 1 FROM known) "
            f"THEN true ELSE {probe} END, {codes_out}"
        )
        params = [
            *([provider_message_id, spare_codes] if spare_codes else []),
            provider_message_id,
            final,
            "" if final == "delivered" else failure_reason,
            at,
            provider_message_id,
            *report_values,
            at,
            *([provider_message_id] if log_probe else []),
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            *settled, (_, _, look_in_log, codes) = cursor.fetchall()
        return [(purpose, meter_id) for purpose, meter_id, _, _ in settled], bool(look_in_log), bool(codes)

    return {"before": before, "no_log_probe": no_log_probe, "no_codes": no_codes, "minimal": minimal}


if __name__ == "__main__":
    main()
