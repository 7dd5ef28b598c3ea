"""The outbox's PostgreSQL statements (data-modifying CTEs, UPDATE ... FROM VALUES, SKIP LOCKED).

Same functions, same signatures as `sms._portable`; `sms.services` picks one per call through
`kplc_sts.db.by_vendor`. At hundreds of messages and reports a second each of these is one round
trip where the portable twin takes a few statements per row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from kplc_sts import partitions
from kplc_sts.db import sql_value
from kplc_sts.pgtuning import partition_storage_sql

from .backends import SendResult
from .events import codes_delivered
from .models import DeliveryReport, Message, MessageLog, MessageTally
from .tallies import TALLY_SHARD_SQL, tally_add

Status = Message.Status
Purpose = Message.Purpose
_MESSAGES, _REPORTS, _TALLIES = Message._meta.db_table, DeliveryReport._meta.db_table, MessageTally._meta.db_table
_LOG = MessageLog._meta.db_table
# A monthly partition's name, as log_partitions_ensure makes it (the DEFAULT one does not match).
_LOG_MONTH = re.compile(rf"^{_LOG}_(?P<year>\d{{4}})(?P<month>\d{{2}})$")


def messages_mark_sent(*, accepted: Sequence[tuple[int, SendResult]], now: dt.datetime) -> list[int]:
    """Store what the gateway accepted, one UPDATE ... FROM (VALUES ...) for the lot; returns the
    ids stored (a message the sweep settled meanwhile is left alone)."""
    values = ", ".join(["(%s::bigint, %s::varchar, %s::numeric, %s::varchar)"] * len(accepted))
    params: list[Any] = []
    for pk, result in accepted:
        params += [pk, result.provider_message_id, result.cost, result.currency or ""]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_MESSAGES} AS m SET status = %s, provider_message_id = v.pid, cost = v.cost, "  # noqa: S608
            "currency = v.currency, sent_at = %s, last_error = '' "
            f"FROM (VALUES {values}) AS v (id, pid, cost, currency) "
            "WHERE m.id = v.id AND m.status IN (%s, %s) RETURNING m.id",
            [Status.SENT, sql_value(now), *params, Status.SENDING, Status.QUEUED],
        )
        return sorted(row[0] for row in cursor.fetchall())


def report_receive(
    *,
    provider_message_id: str,
    status: str,
    failure_reason: str,
    phone_number: str,
    network_code: str,
    retry_count: int | None,
    final: str | None,
    now: dt.datetime,
    log_since: dt.datetime,
) -> bool:
    """The whole report in one statement: store it (idempotent on the provider id), settle its
    message if the id is known, count it in the batch's tally. Returns whether the caller must
    look in the log: a final report that settled nothing in the outbox, for a message that was
    there when the statement began (moved by the mover meanwhile, or settled already) or that the
    log holds unsettled. A report for a message nowhere yet (it beat the worker's commit of the
    provider id) waits, unapplied, for the worker or the sweep. The log is looked in from
    `log_since` on only: older months are the archive's, and log_reports_apply leaves them alone."""
    at = sql_value(now)
    report_values = [provider_message_id, status, failure_reason, phone_number, network_code, retry_count, at]
    with connection.cursor() as cursor:
        if final is None:
            # An intermediate report (Sent, Submitted, Buffered): kept as evidence the gateway took
            # the message (the sweep's reconciliation reads it), nothing to settle.
            cursor.execute(
                f"INSERT INTO {_REPORTS} (provider_message_id, status, failure_reason, phone_number, "  # noqa: S608
                "network_code, retry_count, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (provider_message_id) DO NOTHING",
                report_values,
            )
            return False
    if final == Status.DELIVERED:
        # Most delivered reports are for notices: nothing else to do, so the statement is its own
        # transaction (autocommit: one round trip, not BEGIN, statement, COMMIT). A delivered codes
        # SMS must commit with the campaign's bookkeeping: that statement leaves it alone and says
        # so, and it is done again in a transaction with the bookkeeping.
        settled, look_in_log, codes = _report_statement(
            report_values, final, failure_reason, at, log_since, spare_codes=True
        )
        if not codes:
            return look_in_log
        with transaction.atomic():
            settled, look_in_log, _ = _report_statement(
                report_values, final, failure_reason, at, log_since, spare_codes=False
            )
            _codes_delivered([meter_id for purpose, meter_id in settled if purpose == Purpose.CODES], now)
            return look_in_log
    # A failure report settles the message and counts it; nothing else hangs on it.
    return _report_statement(report_values, final, failure_reason, at, log_since, spare_codes=False)[1]


def _report_statement(
    report_values: list[Any], final: str, failure_reason: str, at: Any, log_since: dt.datetime, *, spare_codes: bool
) -> tuple[list[tuple[str, int | None]], bool, bool]:
    """Store a final report, settle its message if the id is known, count it in the batch's tally,
    in one statement. Returns the (purpose, meter_id) settled, whether the caller must look in the
    log, and (with `spare_codes`) whether it did nothing because the message is a codes SMS.

    One lookup of the message (`known`, with its purpose) serves the settling, the codes check and
    the answer; the log is probed by a second statement only for a report whose message the
    outbox does not hold, because planning a probe over every monthly log partition on every
    report cost more than the rest of the statement (bench/report_bench.py)."""
    provider_message_id = report_values[0]
    column = "delivered" if final == Status.DELIVERED else "failed"
    finals = ["Success", "Failed", "Rejected"]
    spare = "AND purpose <> %s" if spare_codes else ""
    where_spare = "WHERE NOT EXISTS (SELECT 1 FROM known WHERE purpose = %s)" if spare_codes else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH known AS (SELECT purpose FROM {_MESSAGES} WHERE provider_message_id = %s), "  # noqa: S608
            f"settled AS (UPDATE {_MESSAGES} SET status = %s, failure_reason = %s, delivered_at = %s "
            f"WHERE provider_message_id = %s AND status IN (%s, %s, %s) {spare} "
            "RETURNING batch_id, purpose, meter_id), "
            f"report AS (INSERT INTO {_REPORTS} (provider_message_id, status, failure_reason, phone_number, "
            "network_code, retry_count, received_at, applied_at) "
            "SELECT %s, %s, %s, %s, %s, %s::smallint, %s::timestamptz, "
            f"CASE WHEN EXISTS (SELECT 1 FROM known) THEN %s::timestamptz END {where_spare} "
            "ON CONFLICT (provider_message_id) DO UPDATE SET status = EXCLUDED.status, "
            "failure_reason = EXCLUDED.failure_reason, applied_at = EXCLUDED.applied_at "
            f"WHERE {_REPORTS}.status NOT IN (%s, %s, %s) RETURNING 1), "
            f"tallied AS (INSERT INTO {_TALLIES} (batch_id, shard, sent, delivered, failed) "
            f"SELECT batch_id, {TALLY_SHARD_SQL}, 0, {int(column == 'delivered')}, {int(column == 'failed')} "
            "FROM settled WHERE batch_id IS NOT NULL "
            f"ON CONFLICT (batch_id, shard) DO UPDATE SET {column} = {_TALLIES}.{column} + 1 "
            "RETURNING 1) "
            "SELECT purpose, meter_id, NULL, NULL FROM settled UNION ALL "
            "SELECT NULL, NULL, EXISTS (SELECT 1 FROM known), "
            "%s AND EXISTS (SELECT 1 FROM known WHERE purpose = %s)",
            [
                provider_message_id,
                final,
                "" if final == Status.DELIVERED else failure_reason,
                at,
                provider_message_id,
                Status.SENDING,
                Status.SENT,
                Status.QUEUED,
                *([Purpose.CODES] if spare_codes else []),
                *report_values,
                at,
                *([Purpose.CODES] if spare_codes else []),
                *finals,
                spare_codes,
                Purpose.CODES,
            ],
        )
        *settled, (_, _, known, codes) = cursor.fetchall()
        look_in_log = False
        if not settled and not codes:
            # Not settled here: settled already or moved to the log meanwhile (known), or a message
            # the outbox does not hold, which the log may hold unsettled.
            look_in_log = bool(known) or _log_holds_unsettled(cursor, provider_message_id, log_since)
    return [(purpose, meter_id) for purpose, meter_id, _, _ in settled], look_in_log, bool(codes)


def _log_holds_unsettled(cursor: Any, provider_message_id: str, since: dt.datetime) -> bool:
    # The bound is a literal by the time PostgreSQL plans it: the months before it are pruned
    # from the plan, not probed (and not locked against the archive's DETACH).
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {_LOG} WHERE provider_message_id = %s AND status = %s "  # noqa: S608
        "AND created_at >= %s)",
        [provider_message_id, Status.SENT, sql_value(since)],
    )
    return bool(cursor.fetchone()[0])


def _codes_delivered(meter_ids: Sequence[int | None], now: dt.datetime) -> None:
    delivered = [meter_id for meter_id in meter_ids if meter_id is not None]
    if delivered:
        codes_delivered.send(sender=Message, meter_ids=delivered, at=now)


def reports_apply(
    *,
    provider_message_ids: Sequence[str] | None,
    limit: int,
    report_status: Mapping[str, str],
    now: dt.datetime,
    since: dt.datetime | None = None,
) -> int:
    """Set-based: settle the messages of final reports whose message id is known by now (of those
    received from `since` on, when given)."""
    at = sql_value(now)
    only = "AND d.provider_message_id = ANY(%s) " if provider_message_ids is not None else ""
    if since is not None:
        only += "AND d.received_at >= %s "
    statuses = list(report_status)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "WITH r AS (SELECT d.id, d.provider_message_id, d.status, d.failure_reason "  # noqa: S608
            f"FROM {_REPORTS} d WHERE d.applied_at IS NULL AND d.status IN (%s, %s, %s) {only}"
            f"AND EXISTS (SELECT 1 FROM {_MESSAGES} x WHERE x.provider_message_id = d.provider_message_id) "
            "ORDER BY d.id LIMIT %s FOR UPDATE OF d SKIP LOCKED), "
            f"settled AS (UPDATE {_MESSAGES} m SET "
            "status = CASE r.status WHEN %s THEN %s WHEN %s THEN %s ELSE %s END, "
            "failure_reason = CASE WHEN r.status = %s THEN '' ELSE r.failure_reason END, delivered_at = %s "
            "FROM r WHERE m.provider_message_id = r.provider_message_id AND m.status IN (%s, %s, %s) "
            "RETURNING m.batch_id, m.status, m.purpose, m.meter_id), "
            f"applied AS (UPDATE {_REPORTS} d SET applied_at = %s FROM r WHERE d.id = r.id RETURNING 1) "
            "SELECT batch_id, status, COUNT(*), array_agg(meter_id) FILTER (WHERE purpose = %s) "
            "FROM settled GROUP BY batch_id, status "
            "UNION ALL SELECT NULL, 'applied', COUNT(*), NULL FROM applied",
            [
                *statuses,
                *([list(provider_message_ids)] if provider_message_ids is not None else []),
                *([sql_value(since)] if since is not None else []),
                limit,
                "Success",
                Status.DELIVERED,
                "Failed",
                Status.FAILED,
                Status.REJECTED,
                "Success",
                at,
                Status.SENDING,
                Status.SENT,
                Status.QUEUED,
                at,
                Purpose.CODES,
            ],
        )
        rows = cursor.fetchall()
        applied = 0
        delivered_codes: list[int | None] = []
        for batch_id, status, count, codes_meters in sorted(
            rows, key=lambda row: (row[0] is None, row[0] or 0, row[1])
        ):
            if status == "applied":
                applied = count
            elif status == Status.DELIVERED:
                tally_add(batch_id, delivered=count)
                delivered_codes.extend(codes_meters or [])
            else:
                tally_add(batch_id, failed=count)
        _codes_delivered(delivered_codes, now)
    return int(applied)


def messages_move_settled(
    *, where_sql: str, where_params: Sequence[Any], columns: Sequence[str], limit: int, now: dt.datetime
) -> int:
    """Move up to `limit` settled outbox rows to the log in one statement: the DELETE and the
    INSERT commit together or not at all, so a row is in exactly one of the two tables. Rows a
    concurrent transaction holds are skipped (the next pass takes them)."""
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH moved AS (DELETE FROM {_MESSAGES} WHERE id IN (SELECT id FROM {_MESSAGES} "  # noqa: S608
            f"WHERE {where_sql} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {names}) "
            f"INSERT INTO {_LOG} ({names}, logged_at) SELECT {names}, %s FROM moved",
            [*where_params, limit, sql_value(now)],
        )
        return int(cursor.rowcount)


def _month_start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=dt.UTC)


def log_partitions_ensure(*, first: dt.datetime, months: int) -> list[str]:
    """Make the monthly partitions of the log from `first`'s month on, `months` of them, that do
    not exist yet; returns the names made. Rows the DEFAULT partition caught for a new month move
    into it in the same transaction (ATTACH would refuse them otherwise)."""
    made = []
    for offset in range(months):
        start = _month_start(first.year, first.month + offset)
        end = _month_start(first.year, first.month + offset + 1)
        name = f"{_LOG}_{start:%Y%m}"
        with transaction.atomic(), connection.cursor() as cursor:
            if partitions.partition_exists(cursor, name):
                continue
            cursor.execute(f"CREATE TABLE {name} (LIKE {_LOG} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            cursor.execute(
                f"WITH caught AS (DELETE FROM {_LOG}_default WHERE created_at >= %s AND created_at < %s "  # noqa: S608
                f"RETURNING *) INSERT INTO {name} SELECT * FROM caught",
                [start, end],
            )
            cursor.execute(f"ALTER TABLE {_LOG} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [start, end])
            storage = partition_storage_sql(_LOG, name)
            if storage:
                cursor.execute(storage)
        made.append(name)
    return made


def log_partitions() -> list[str]:
    """The log's partitions, oldest first (the DEFAULT one last)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname = %s, c.relname",
            [_LOG, f"{_LOG}_default"],
        )
        return [row[0] for row in cursor.fetchall()]


def log_partition_months() -> dict[str, dt.datetime]:
    """The log's monthly partitions, oldest first: name -> the (UTC) month it holds. Never the
    DEFAULT partition, which holds no one month."""
    found = {}
    for name in log_partitions():
        month = _LOG_MONTH.match(name)
        if month is not None:
            found[name] = dt.datetime(int(month["year"]), int(month["month"]), 1, tzinfo=dt.UTC)
    return found


def log_partition_count(*, name: str) -> int:
    with connection.cursor() as cursor:
        return partitions.partition_count(cursor, name)


def log_partition_export(*, name: str, path: Path) -> tuple[int, str]:
    """Export the partition to `path` (gzip CSV) under a SHARE lock and prove the file; returns
    (rows, sha256). Run inside the transaction that drops it."""
    with connection.cursor() as cursor:
        return partitions.partition_export(cursor, name, path)


def log_partition_drop(*, name: str) -> None:
    """Detach the partition from the log and drop it (gives up after a short lock_timeout rather
    than queue the mover behind it)."""
    with connection.cursor() as cursor:
        partitions.partition_detach_drop(cursor, _LOG, name)
