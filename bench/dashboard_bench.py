"""Server time of every staff-dashboard page at full scale (issue 7: at most 300 ms each).

    .venv/bin/python bench/dashboard_bench.py                         # 7.4 M meters, 1 M enrollments
    .venv/bin/python bench/dashboard_bench.py --meters 200000 --enrollments 50000   # quick check
    .venv/bin/python bench/dashboard_bench.py --keep                  # keep the database afterwards

Creates a scratch PostgreSQL database (default kplc_bench_dash), migrates it, and fills it with
set-based INSERT ... SELECT generate_series (indexes dropped during the load and rebuilt after,
with their exact definitions):

* meters spread over 47 regions and two supply groups, all on KRN 1;
* one campaign (two SGCs, KRN 1 -> 2), 40 batches over the last 20 days plus two tomorrow,
  `--enrollments` enrollments in a realistic mix of states with consistent timestamps;
* one notice SMS per notified enrollment (delivered, failed or rejected with reasons; the
  newest running batch still queued);
* the maintained aggregates recomputed from those rows: Batch and Campaign counters,
  CampaignDailyStat (by Nairobi day), the CampaignTarget snapshot (timed: that is the refresh
  job's cost), and 24 h of VendMinuteStat / ApiErrorStat minute rows.

Then it times each page with Django's test Client in-process (a signed-in campaign manager,
so the session, user and permission queries are included): one warm-up and `--runs` timed
requests each, reporting p50 and max of the wall time spent inside the server (request in,
response rendered; streamed CSV: the first 2,000 rows). The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REGIONS = 47
BATCHES = 40
TARGET_MS = 300.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=7_400_000)
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database", default="kplc_bench_dash")
    parser.add_argument("--server", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--keep", action="store_true", help="keep the database (and skip the load if it exists)")
    return parser.parse_args()


def admin_sql(server: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def database_exists(server: str, name: str) -> bool:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        found = cur.fetchone() is not None
    conn.close()
    return found


class Step:
    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> Step:
        self.start = time.perf_counter()
        print(f"  {self.label} ...", end="", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        print(f" {self.seconds:.1f} s", flush=True)


def without_indexes(cursor, table: str):
    """Drop the table's secondary indexes (not the primary key) and return their definitions."""
    cursor.execute(
        """SELECT i.indexname, i.indexdef, c.conname FROM pg_indexes i
           LEFT JOIN pg_constraint c ON c.conname = i.indexname AND c.contype IN ('u', 'x')
           WHERE i.tablename = %s AND i.indexname NOT LIKE '%%_pkey'""",
        [table],
    )
    saved = cursor.fetchall()
    for name, _definition, constraint in saved:
        if constraint:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
        else:
            cursor.execute(f'DROP INDEX "{name}"')
    return saved


def restore_indexes(cursor, table: str, saved) -> None:
    for name, definition, constraint in saved:
        cursor.execute(definition)
        if constraint:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" UNIQUE USING INDEX "{name}"')


def load(n_meters: int, n_enrollments: int) -> dict[str, float]:
    import datetime as dt

    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Batch, Campaign
    from campaigns.services import campaign_create, campaign_target_refresh

    timings: dict[str, float] = {}
    now = timezone.now()
    today = timezone.localdate()
    per_batch = max(n_enrollments // BATCHES, 1)
    with connection.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '512MB'")
        saved = without_indexes(cur, "meters_meter")
        with Step(f"{n_meters:,} meters") as step:
            cur.execute(
                f"""
                INSERT INTO meters_meter (meter_number, iin, sgc, ti, krn, kt, ea, dkga, base_date, ken,
                    account_number, customer_name, phone, region, status, key_state, created_at, updated_at)
                SELECT '5' || lpad(i::text, 10, '0'), '600727',
                       CASE WHEN i %% 5 = 0 THEN '600676' ELSE '600675' END, 1, 1, 2, '07', '02', 1993, 255,
                       'ACC' || i, 'Customer ' || i, '+2547' || lpad((i::bigint * 7919 %% 100000000)::text, 8, '0'),
                       'Region ' || lpad((i %% {REGIONS})::text, 2, '0'),
                       CASE WHEN i %% 997 = 0 THEN 'retired' ELSE 'active' END, 'old_key', now(), now()
                FROM generate_series(1, %s) AS i
                """,
                [n_meters],
            )
        timings["load meters"] = step.seconds
        with Step("meter indexes") as step:
            restore_indexes(cur, "meters_meter", saved)
        timings["meter indexes"] = step.seconds

    campaign = campaign_create(
        name="Update Token Meter Yako",
        sgcs=["600675", "600676"],
        from_krn=1,
        to_krn=2,
        deadline=today + dt.timedelta(days=100),
        daily_capacity=60_000,
        actor_label="bench",
    )
    start_day = today - dt.timedelta(days=20)
    Campaign.objects.filter(pk=campaign.pk).update(
        created_at=timezone.make_aware(dt.datetime.combine(start_day, dt.time(8)))
    )
    batches = []
    for number in range(1, BATCHES + 3):
        if number <= BATCHES:
            day = start_day + dt.timedelta(days=(number - 1) // 2)
            status = Batch.Status.NOTIFYING if number == BATCHES else Batch.Status.OPEN
        else:
            day, status = today + dt.timedelta(days=1), Batch.Status.SCHEDULED
        at = timezone.make_aware(dt.datetime.combine(day, dt.time(9 if number % 2 else 14)))
        batches.append(
            Batch(
                campaign=campaign,
                number=number,
                selection_regions=[],
                selection_sgcs=[],
                selection_limit=per_batch,
                scheduled_at=at,
                status=status,
                notices_created_at=at if number <= BATCHES else None,
                started_at=at if number <= BATCHES else None,
                created_by="bench",
            )
        )
    Batch.objects.bulk_create(batches)
    first_batch_id = Batch.objects.filter(campaign=campaign).order_by("number").values_list("id", flat=True)[0]

    # Autocommit, statement by statement: Django's foreign keys are DEFERRABLE INITIALLY DEFERRED,
    # and an index cannot be built in a transaction with pending constraint checks.
    with connection.cursor() as cur:
        saved_e = without_indexes(cur, "campaigns_enrollment")
        saved_m = without_indexes(cur, "sms_message")
        total = per_batch * (BATCHES + 2)
        with Step(f"{total:,} enrollments") as step:
            # Meter i (i = 1..total, skipping retired ones is not worth it here) -> batch (i-1) // per_batch.
            cur.execute(
                """
                WITH src AS (
                    SELECT m.id AS meter_id, b.id AS batch_id, b.scheduled_at, b.number, m.id %% 100 AS r
                    FROM (SELECT id, row_number() OVER (ORDER BY id) AS i FROM meters_meter
                          WHERE status = 'active' ORDER BY id LIMIT %(total)s) AS m
                    JOIN campaigns_batch b ON b.id = %(first)s + (m.i - 1) / %(per)s
                ), t AS (
                    SELECT *, scheduled_at + (meter_id %% 3600) * interval '1 second' AS n_at,
                           CASE WHEN number > %(done)s THEN 'scheduled'
                                WHEN number = %(done)s AND r < 40 THEN 'scheduled'
                                WHEN r < 2 THEN 'failed' WHEN r = 2 THEN 'non_compliant'
                                WHEN r < 18 THEN 'confirmed' WHEN r < 70 THEN 'codes_issued'
                                WHEN r < 95 THEN 'notified' ELSE 'scheduled' END AS state
                    FROM src
                ), u AS (
                    SELECT *, LEAST(n_at + (meter_id %% 7 + 1) * interval '9 hours', %(now)s) AS c_at FROM t
                )
                INSERT INTO campaigns_enrollment (campaign_id, meter_id, batch_id, origin, state, enrolled_at,
                    notified_at, codes_issued_at, confirmed_at, failed_at, non_compliant_at, state_changed_at, note)
                SELECT %(campaign)s, meter_id, batch_id, 'batch', state, scheduled_at - interval '1 day',
                       CASE WHEN state <> 'scheduled' THEN n_at END,
                       CASE WHEN state IN ('codes_issued', 'confirmed', 'failed', 'non_compliant') THEN c_at END,
                       CASE WHEN state = 'confirmed' THEN LEAST(c_at + interval '2 hours', %(now)s) END,
                       CASE WHEN state = 'failed' THEN LEAST(c_at + interval '1 hour', %(now)s) END,
                       CASE WHEN state = 'non_compliant' THEN LEAST(c_at + interval '3 hours', %(now)s) END,
                       %(now)s, CASE WHEN state = 'failed' THEN 'meter rejected the codes' ELSE '' END
                FROM u
                """,
                {"total": total, "first": first_batch_id, "per": per_batch, "done": BATCHES, "now": now,
                 "campaign": campaign.pk},
            )  # fmt: skip
        timings["load enrollments"] = step.seconds
        with Step("notice SMS") as step:
            reasons = "ARRAY['UserInBlacklist','InvalidPhoneNumber','AbsentSubscriber','DeliveryFailure']"
            cur.execute(
                f"""
                INSERT INTO sms_message (recipient, body, purpose, status, provider_message_id, attempts,
                    last_error, failure_reason, currency, meter_id, batch_id, created_at, sent_at, delivered_at,
                    sent_counted)
                SELECT m.phone, 'KPLC: meter ' || m.meter_number || ' gets its token update.', 'notice',
                       s.status, CASE WHEN s.status <> 'queued' THEN 'ATXid_' || e.id END, 1, '',
                       CASE WHEN s.status IN ('failed', 'rejected') THEN ({reasons})[1 + e.id %% 4] ELSE '' END,
                       'KES', e.meter_id, e.batch_id, e.notified_at - interval '1 minute',
                       CASE WHEN s.status <> 'queued' THEN e.notified_at END,
                       CASE WHEN s.status IN ('delivered', 'failed', 'rejected') THEN e.notified_at END,
                       TRUE
                FROM campaigns_enrollment e JOIN meters_meter m ON m.id = e.meter_id
                CROSS JOIN LATERAL (SELECT CASE WHEN e.id %% 50 = 7 THEN 'failed' WHEN e.id %% 50 = 11 THEN 'rejected'
                                                ELSE 'delivered' END AS status) s
                WHERE e.campaign_id = %s AND e.notified_at IS NOT NULL
                """,
                [campaign.pk],
            )
            # The running batch still has queued notices (its not-yet-notified enrollments).
            cur.execute(
                """
                INSERT INTO sms_message (recipient, body, purpose, status, attempts, last_error, failure_reason,
                    currency, meter_id, batch_id, created_at, sent_counted)
                SELECT m.phone, 'KPLC: notice', 'notice', 'queued', 0, '', '', '', e.meter_id, e.batch_id, %s, FALSE
                FROM campaigns_enrollment e JOIN meters_meter m ON m.id = e.meter_id
                JOIN campaigns_batch b ON b.id = e.batch_id
                WHERE b.number = %s AND b.campaign_id = %s AND e.state = 'scheduled'
                """,
                [now, BATCHES, campaign.pk],
            )
        timings["load sms"] = step.seconds
        with Step("enrollment + sms indexes") as step:
            restore_indexes(cur, "campaigns_enrollment", saved_e)
            restore_indexes(cur, "sms_message", saved_m)
        timings["enrollment + sms indexes"] = step.seconds

        with Step("maintained aggregates") as step:
            cur.execute(
                """
                UPDATE campaigns_batch b SET enrolled = a.enrolled, notified = a.notified,
                    codes_issued = a.codes, confirmed = a.confirmed, done = a.done, failed = a.failed,
                    non_compliant = a.nc
                FROM (SELECT batch_id, count(*) AS enrolled, count(notified_at) AS notified,
                             count(codes_issued_at) AS codes, count(confirmed_at) AS confirmed,
                             count(*) FILTER (WHERE codes_issued_at IS NOT NULL OR confirmed_at IS NOT NULL
                                              OR non_compliant_at IS NOT NULL) AS done,
                             count(*) FILTER (WHERE state = 'failed') AS failed,
                             count(*) FILTER (WHERE state = 'non_compliant') AS nc
                      FROM campaigns_enrollment GROUP BY batch_id) a
                WHERE a.batch_id = b.id
                """
            )
            # The SMS tallies are the outbox's (sms.MessageTally, shard 0 of each batch here).
            cur.execute("DELETE FROM sms_messagetally")
            cur.execute(
                """
                INSERT INTO sms_messagetally (batch_id, sent, delivered, failed)
                SELECT batch_id, count(*) FILTER (WHERE status <> 'queued'),
                       count(*) FILTER (WHERE status = 'delivered'),
                       count(*) FILTER (WHERE status IN ('failed', 'rejected'))
                FROM sms_message WHERE batch_id IS NOT NULL GROUP BY batch_id
                """
            )
            cur.execute(
                """
                UPDATE campaigns_batch b SET notices_created = a.total
                FROM (SELECT batch_id, count(*) AS total FROM sms_message WHERE batch_id IS NOT NULL
                      GROUP BY batch_id) a
                WHERE a.batch_id = b.id
                """
            )
            counters = "enrolled notified codes_issued confirmed done failed non_compliant".split()
            cur.execute(
                f"UPDATE campaigns_campaign c SET {', '.join(f'{n} = a.{n}' for n in counters)} "
                f"FROM (SELECT campaign_id, {', '.join(f'sum({n}) AS {n}' for n in counters)} "
                "FROM campaigns_batch GROUP BY campaign_id) a WHERE a.campaign_id = c.id"
            )
            cur.execute("DELETE FROM campaigns_campaigndailystat WHERE campaign_id = %s", [campaign.pk])
            cur.execute(
                """
                INSERT INTO campaigns_campaigndailystat (campaign_id, day, scheduled, notices_sent, codes_issued,
                    confirmed, failed, done)
                SELECT %(c)s, day, sum(s), sum(n), sum(k), sum(f), sum(x), sum(d) FROM (
                    SELECT (b.scheduled_at AT TIME ZONE 'Africa/Nairobi')::date AS day, b.enrolled AS s,
                           0 AS n, 0 AS k, 0 AS f, 0 AS x, 0 AS d FROM campaigns_batch b WHERE b.campaign_id = %(c)s
                    UNION ALL SELECT (notified_at AT TIME ZONE 'Africa/Nairobi')::date, 0, 1, 0, 0, 0, 0
                      FROM campaigns_enrollment WHERE campaign_id = %(c)s AND notified_at IS NOT NULL
                    UNION ALL SELECT (codes_issued_at AT TIME ZONE 'Africa/Nairobi')::date, 0, 0, 1, 0, 0, 0
                      FROM campaigns_enrollment WHERE campaign_id = %(c)s AND codes_issued_at IS NOT NULL
                    UNION ALL SELECT (confirmed_at AT TIME ZONE 'Africa/Nairobi')::date, 0, 0, 0, 1, 0, 0
                      FROM campaigns_enrollment WHERE campaign_id = %(c)s AND confirmed_at IS NOT NULL
                    UNION ALL SELECT (failed_at AT TIME ZONE 'Africa/Nairobi')::date, 0, 0, 0, 0, 1, 0
                      FROM campaigns_enrollment WHERE campaign_id = %(c)s AND failed_at IS NOT NULL
                    UNION ALL SELECT (LEAST(codes_issued_at, confirmed_at, non_compliant_at)
                                      AT TIME ZONE 'Africa/Nairobi')::date, 0, 0, 0, 0, 0, 1
                      FROM campaigns_enrollment WHERE campaign_id = %(c)s
                       AND COALESCE(codes_issued_at, confirmed_at, non_compliant_at) IS NOT NULL
                ) x GROUP BY day
                """,
                {"c": campaign.pk},
            )
            # Progress by region: meters updated per region and Nairobi day, as the services count them.
            cur.execute("DELETE FROM campaigns_campaignregionday WHERE campaign_id = %s", [campaign.pk])
            cur.execute(
                """
                INSERT INTO campaigns_campaignregionday (campaign_id, region, day, done)
                SELECT e.campaign_id, m.region,
                       (LEAST(e.codes_issued_at, e.confirmed_at, e.non_compliant_at)
                        AT TIME ZONE 'Africa/Nairobi')::date,
                       count(*)
                FROM campaigns_enrollment e JOIN meters_meter m ON m.id = e.meter_id
                WHERE e.campaign_id = %s AND COALESCE(e.codes_issued_at, e.confirmed_at, e.non_compliant_at) IS NOT NULL
                GROUP BY 1, 2, 3
                """,
                [campaign.pk],
            )
            # 24 hours of vending minutes (8 shards each) and partner-API errors.
            cur.execute(
                """
                INSERT INTO dashboard_vendminutestat (minute, shard, vends, vends_with_codes)
                SELECT date_trunc('minute', %(now)s::timestamptz) - m * interval '1 minute', s,
                       20 + (m * 7 + s * 13) %% 40, (20 + (m * 7 + s * 13) %% 40) * (25 + m %% 20) / 100
                FROM generate_series(0, 1439) m, generate_series(0, 7) s
                """,
                {"now": now},
            )
            cur.execute(
                """
                INSERT INTO dashboard_apierrorstat (minute, code, count)
                SELECT date_trunc('minute', %(now)s::timestamptz) - m * interval '1 minute', code, 1 + m %% 4
                FROM generate_series(0, 1439) m,
                     unnest(ARRAY['UNKNOWN_METER','AMOUNT_TOO_LOW','METER_BLOCKED','DUPLICATE_REFERENCE']) code
                WHERE (m + length(code)) %% 3 = 0
                """,
                {"now": now},
            )
        timings["aggregates"] = step.seconds
    with Step("ANALYZE") as step, connection.cursor() as cur:
        cur.execute("ANALYZE")
    with Step("target snapshot refresh (the refresh job's cost)") as step:
        campaign_target_refresh(campaign=Campaign.objects.get(pk=campaign.pk))
    timings["target refresh"] = step.seconds
    from campaigns.services import meter_segments_refresh

    with Step("segment recount (what the meter import adds for the schedule preview)") as step:
        meter_segments_refresh()
    timings["segment recount"] = step.seconds
    return timings


def consistency_check() -> None:
    """The aggregates the pages read agree with the rows they summarise."""
    from django.db.models import Sum

    from campaigns.models import Campaign, CampaignDailyStat, Enrollment

    campaign = Campaign.objects.get()
    assert campaign.enrolled == Enrollment.objects.count()
    assert campaign.codes_issued == Enrollment.objects.filter(codes_issued_at__isnull=False).count()
    daily = CampaignDailyStat.objects.aggregate(s=Sum("scheduled"), k=Sum("codes_issued"), n=Sum("notices_sent"))
    assert daily["s"] == campaign.enrolled and daily["k"] == campaign.codes_issued and daily["n"] == campaign.notified
    # The preview's segment aggregates against the rows, for the region the bench times.
    from campaigns.selectors import available_from_segments, batch_candidates, campaign_region_live

    selection = {"campaign": campaign, "regions": ["Region 05"], "sgcs": ["600676"]}
    assert available_from_segments(**selection) == batch_candidates(**selection).count()
    # Progress by region adds up to the campaign's updated meters.
    assert sum(campaign_region_live(campaign=campaign).values()) == campaign.done


def time_pages(runs: int) -> list[tuple[str, float, float, int]]:
    import datetime as dt

    from django.contrib.auth.models import Group, User
    from django.core.cache import cache
    from django.test import Client
    from django.utils import timezone

    from accounts.roles import CAMPAIGN_MANAGER, roles_sync
    from campaigns.models import Batch, Campaign

    roles_sync()
    user, _ = User.objects.get_or_create(username="bench-manager", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name=CAMPAIGN_MANAGER))
    client = Client()
    client.force_login(user)
    campaign = Campaign.objects.get()
    open_batch = Batch.objects.filter(status=Batch.Status.OPEN).order_by("-number").first()
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    preview = f"/dashboard/schedule/preview.json?campaign={campaign.pk}&limit=50000&date={tomorrow}&time=09:00"
    pages = [
        ("home (redirect)", "/dashboard/", None),
        ("overview", f"/dashboard/campaigns/{campaign.pk}/", None),
        ("overview data.json", f"/dashboard/campaigns/{campaign.pk}/data.json", None),
        ("batch list", f"/dashboard/batches/?campaign={campaign.pk}", None),
        ("batch list, page 2", f"/dashboard/batches/?campaign={campaign.pk}&page=2", None),
        (f"batch detail ({open_batch.enrolled:,} meters)", f"/dashboard/batches/{open_batch.pk}/", None),
        ("batch delivery.json (uncached)", f"/dashboard/batches/{open_batch.pk}/delivery.json", "nocache"),
        ("schedule form", f"/dashboard/schedule/?campaign={campaign.pk}", None),
        ("preview.json, all regions", preview, None),
        ("preview.json, one region + SGC", preview + "&regions=Region 05&sgcs=600676", None),
        ("vending health", "/dashboard/vending/", None),
        ("vending data.json", "/dashboard/vending/data.json", None),
        ("CSV enrollments (first 2,000 rows)", f"/dashboard/export/enrollments.csv?batch={open_batch.pk}", 2000),
        ("CSV batches (whole)", f"/dashboard/export/batches.csv?campaign={campaign.pk}", 0),
    ]
    results = []
    for label, url, first_rows in pages:
        samples = []
        for run in range(runs + 1):
            if first_rows == "nocache":
                cache.clear()  # time the grouped query itself, not the 30 s cache
            start = time.perf_counter()
            response = client.get(url)
            if response.streaming:
                lines = 0
                for chunk in response.streaming_content:
                    lines += chunk.count(b"\n")
                    if isinstance(first_rows, int) and first_rows and lines > first_rows:
                        break
                response.close()
            elapsed = (time.perf_counter() - start) * 1000
            assert response.status_code in (200, 302), (label, response.status_code)
            if run:  # the first request warms the connection and the caches
                samples.append(elapsed)
        results.append((label, statistics.median(samples), max(samples), response.status_code))
        print(f"  {label:<38} p50 {results[-1][1]:7.1f} ms   max {results[-1][2]:7.1f} ms", flush=True)
    return results


def main() -> None:
    args = parse_args()
    os.environ["DATABASE_URL"] = f"{args.server}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kplc_sts.settings.test")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    reuse = args.keep and database_exists(args.server, args.database)
    if not reuse:
        admin_sql(args.server, f'DROP DATABASE IF EXISTS "{args.database}"')
        admin_sql(args.server, f'CREATE DATABASE "{args.database}"')
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    settings.ALLOWED_HOSTS = ["*"]
    try:
        timings: dict[str, float] = {}
        if not reuse:
            print(f"Loading {args.meters:,} meters and {args.enrollments:,} enrollments into {args.database}")
            call_command("migrate", verbosity=0)
            timings = load(args.meters, args.enrollments)
        consistency_check()
        print(f"Timing every page ({args.runs} runs after one warm-up, Django test Client in-process):")
        results = time_pages(args.runs)
        worst = max(r[2] for r in results)
        slow = [r[0] for r in results if r[1] > TARGET_MS]
        print(f"Slowest single request: {worst:.1f} ms; p50 over {TARGET_MS:.0f} ms: {slow or 'none'}")
        print("\n| page | p50 ms | max ms |\n|---|---:|---:|")
        for label, p50, top, _ in results:
            print(f"| {label} | {p50:.1f} | {top:.1f} |")
        if timings:
            print("\nLoad: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    finally:
        connection.close()
        if not args.keep:
            admin_sql(args.server, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            print(f"Dropped {args.database}")


if __name__ == "__main__":
    main()
