"""The SMS log's retention: monthly partitions past SMS_LOG_MONTHS are exported to gzip CSV, the
file proven (rows re-read == rows in the partition, SHA-256 recorded in an ArchiveRecord), then the
partition is dropped; any failure drops nothing and leaves no file (docs/partitioning.md, "SMS
log"). Real PostgreSQL: the SQLite log is one plain table, with nothing to archive (checked too)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from kplc_sts import partitions
from kplc_sts.db import portable_forced
from sms.models import DeliveryReport, MessageLog
from sms.services import (
    LogArchive,
    delivery_report_receive,
    log_partitions,
    log_partitions_archive,
    log_partitions_due,
    log_partitions_ensure,
    log_reports_apply,
    messages_sweep,
)
from tokens.models import ArchiveRecord
from tokens.services import history
from tokens.tasks import archive_partitions_task

pytestmark = pytest.mark.django_db

UTC = dt.UTC
JANUARY = dt.datetime(2025, 1, 1, tzinfo=UTC)
FEBRUARY = dt.datetime(2025, 2, 1, tzinfo=UTC)
# With SMS_LOG_MONTHS = 2, mid-March keeps February and March: January goes.
MID_MARCH = dt.datetime(2025, 3, 15, tzinfo=UTC)
OLD, RECENT = "sms_messagelog_202501", "sms_messagelog_202502"
# Texts a CSV must carry intact: a comma, quotes, a newline inside the field, Kiswahili, an emoji.
OLD_TEXTS = {
    101: ("+254712000101", 'KPLC: "update code 1", then update code 2'),
    102: ("+254712000102", "KPLC: weka namba ya usasishaji 1,\nkisha namba 2"),
    103: ("+254712000103", "KPLC: asante \N{SMILING FACE WITH SMILING EYES}"),
}


@pytest.fixture
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the SMS log is partitioned on PostgreSQL only (the SQLite demo keeps a plain table)")


postgres = pytest.mark.usefixtures("_postgres_only")


def _log(pk: int, at: dt.datetime, recipient: str, body: str, **fields: Any) -> MessageLog:
    defaults: dict[str, Any] = {"purpose": "notice", "status": "delivered", "delivered_at": at}
    return MessageLog.objects.create(id=pk, recipient=recipient, body=body, created_at=at, **{**defaults, **fields})


@pytest.fixture
def months(settings, tmp_path) -> dict[str, list[int]]:
    """January (3 messages, one sent with no report yet) and February (2), in their own partitions."""
    settings.ARCHIVE_DIR = tmp_path
    settings.SMS_LOG_MONTHS = 2
    made = log_partitions_ensure(now=JANUARY + dt.timedelta(days=9), months_ahead=2)
    assert {OLD, RECENT} <= set(made)
    for n, (pk, (recipient, body)) in enumerate(OLD_TEXTS.items()):
        sent = {"status": "sent", "delivered_at": None, "provider_message_id": "ATX-jan"} if pk == 103 else {}
        _log(pk, JANUARY + dt.timedelta(days=10 + n, hours=n), recipient, body, **sent)
    _log(201, FEBRUARY + dt.timedelta(hours=1), "+254712000201", "KPLC: February")
    _log(202, FEBRUARY + dt.timedelta(days=27, hours=23), "+254712000202", "KPLC: end of February")
    assert _partition_of(101) == OLD and _partition_of(201) == RECENT
    return {"old": sorted(OLD_TEXTS), "recent": [201, 202]}


def _partition_of(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM sms_messagelog WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def _exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def _read(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="", encoding="utf-8") as text:
        return list(csv.DictReader(text))


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


RECORDED: list[LogArchive] = []


def _record(archive: LogArchive) -> None:
    """A stand-in for tokens' ArchiveRecord, where a test calls the sms service itself."""
    RECORDED.append(archive)


@postgres
def test_the_months_past_retention_are_due_never_the_default(months) -> None:
    assert log_partitions_due(now=MID_MARCH) == [(OLD, JANUARY)]
    # The cutoff is a whole month: on the last second of February, January is already past it...
    assert log_partitions_due(now=dt.datetime(2025, 2, 28, 23, 59, 59, tzinfo=UTC)) == []
    # ...and in UTC: 1 March 01:00 in Nairobi is still February in UTC.
    nairobi = dt.timezone(dt.timedelta(hours=3))
    assert log_partitions_due(now=dt.datetime(2025, 3, 1, 1, 0, tzinfo=nairobi)) == []
    assert log_partitions_due(now=dt.datetime(2025, 3, 1, tzinfo=UTC)) == [(OLD, JANUARY)]
    # Far ahead, every monthly partition is due, the DEFAULT never (it holds no one month).
    due = [name for name, _ in log_partitions_due(now=dt.datetime(2040, 1, 1, tzinfo=UTC))]
    assert OLD in due and RECENT in due and "sms_messagelog_default" not in due
    assert due == sorted(due)


@postgres
def test_a_dry_run_counts_and_drops_nothing(months, tmp_path) -> None:
    dry = log_partitions_archive(now=MID_MARCH, dry_run=True)
    assert [(a.partition, a.rows, a.month, a.end, a.dry_run) for a in dry] == [(OLD, 3, JANUARY, FEBRUARY, True)]
    assert _exists(OLD) and MessageLog.objects.count() == 5
    assert not _files(tmp_path) and not ArchiveRecord.objects.exists()


@postgres
def test_archive_exports_proves_records_and_drops_the_old_month(months, tmp_path) -> None:
    done = history.sms_log_archive(now=MID_MARCH)
    assert [(r.table, r.partition, r.rows, r.dry_run) for r in done] == [("sms_messagelog", OLD, 3, False)]

    # January is gone from the database; February stays, with its rows.
    assert not _exists(OLD) and OLD not in log_partitions()
    assert _exists(RECENT)
    assert sorted(MessageLog.objects.values_list("id", flat=True)) == months["recent"]

    # The file holds exactly January's rows, every text intact.
    path = tmp_path / "sms_messagelog" / f"{OLD}.csv.gz"
    assert done[0].path == str(path) and not path.with_suffix(".partial").exists()
    rows = _read(path)
    assert {int(row["id"]): (row["recipient"], row["body"]) for row in rows} == OLD_TEXTS
    assert {row["status"] for row in rows} == {"delivered", "sent"}
    assert all(row["created_at"].startswith("2025-01-") for row in rows)

    # And the record proves it: SHA-256 of the file, its size, its rows, the month in UTC.
    record = ArchiveRecord.objects.get(partition=OLD)
    assert record.table == "sms_messagelog" and record.path == str(path)
    assert record.sha256 == done[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.size_bytes == path.stat().st_size
    assert record.rows == len(rows) == 3
    assert (record.range_start, record.range_end) == (JANUARY, FEBRUARY)
    assert record.dropped_at is not None

    assert log_partitions_archive(now=MID_MARCH, record=_record) == []  # nothing left to do


@postgres
def test_a_count_that_disagrees_drops_nothing_and_leaves_no_file(months, tmp_path, monkeypatch) -> None:
    real = partitions.file_rows_and_digest

    def one_row_short(path: Path) -> tuple[int, str]:
        rows, sha256 = real(path)
        return rows - 1, sha256

    monkeypatch.setattr(partitions, "file_rows_and_digest", one_row_short)
    with pytest.raises(RuntimeError, match="3 rows in the partition, 2 in"):
        history.sms_log_archive(now=MID_MARCH)
    assert _exists(OLD) and sorted(MessageLog.objects.values_list("id", flat=True)) == [101, 102, 103, 201, 202]
    assert _partition_of(101) == OLD
    assert not _files(tmp_path) and not ArchiveRecord.objects.exists()


@postgres
def test_a_failing_export_or_record_drops_nothing_and_leaves_no_file(months, tmp_path, monkeypatch) -> None:
    def broken_copy(cursor: Any, name: str, out: Any) -> None:
        out.write("id\n1\n")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(partitions, "partition_copy_csv", broken_copy)
        with pytest.raises(OSError, match="disk full"):
            log_partitions_archive(now=MID_MARCH, record=_record)
    assert _exists(OLD) and MessageLog.objects.count() == 5 and not _files(tmp_path)

    # The record cannot be written: the file was renamed into place by then, and still goes.
    def refused(archive: LogArchive) -> None:
        assert Path(archive.path).exists()
        raise RuntimeError("record refused")

    with pytest.raises(RuntimeError, match="record refused"):
        log_partitions_archive(now=MID_MARCH, record=refused)
    assert _exists(OLD) and MessageLog.objects.count() == 5 and not _files(tmp_path)

    # No record at all: refused before anything is written.
    with pytest.raises(TypeError, match="never dropped unrecorded"):
        log_partitions_archive(now=MID_MARCH)
    assert _exists(OLD) and not _files(tmp_path) and not ArchiveRecord.objects.exists()

    # The partition can still be archived afterwards.
    RECORDED.clear()
    assert [a.partition for a in log_partitions_archive(now=MID_MARCH, record=_record)] == [OLD]
    assert [a.partition for a in RECORDED] == [OLD] and not _exists(OLD)


@postgres
def test_a_file_left_by_a_run_that_did_not_commit_is_set_aside_and_the_month_archived_afresh(months, tmp_path) -> None:
    # A run killed between publishing the file and committing the drop leaves the file and the
    # partition both: the partition is the truth, the file only a leftover.
    path = tmp_path / "sms_messagelog" / f"{OLD}.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a leftover")
    [result] = history.sms_log_archive(now=MID_MARCH)
    assert not _exists(OLD) and Path(result.path) == path
    record = ArchiveRecord.objects.get(partition=OLD)
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and len(_read(path)) == 3
    [aside] = [found for found in _files(tmp_path) if found.name.startswith(f"{OLD}.csv.gz.stale-")]
    assert aside.read_bytes() == b"a leftover"


def test_publishing_never_replaces_an_archive_file(tmp_path) -> None:
    partial, path = tmp_path / "a.csv.gz.partial", tmp_path / "a.csv.gz"
    partial.write_bytes(b"new")
    path.write_bytes(b"recorded")
    with pytest.raises(FileExistsError):
        partitions.archive_file_publish(partial, path)
    assert path.read_bytes() == b"recorded" and partial.exists()


@postgres
def test_a_second_archive_run_is_refused_while_one_holds_the_lock(months, tmp_path) -> None:
    # The beat task, a manual command or a re-delivered task: while one run works, the others touch
    # nothing (before the lock, two copied the same month and one deleted the other's recorded file).
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [partitions.ARCHIVE_RUN_LOCK])
        with pytest.raises(partitions.ArchiveBusy):
            history.partitions_archive_all(now=MID_MARCH)
        with pytest.raises(partitions.ArchiveBusy):
            log_partitions_archive(now=MID_MARCH, record=_record)
        with pytest.raises(CommandError, match="another archive run"):
            call_command("archive_partitions", stdout=StringIO())
        assert archive_partitions_task.apply().get() == 0
        assert _exists(OLD) and not _files(tmp_path) and not ArchiveRecord.objects.exists()
    finally:
        other.close()
    # Released with the other session: this run archives, and leaves the lock free behind it.
    assert [r.partition for r in history.partitions_archive_all(now=MID_MARCH)] == [OLD]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [partitions.ARCHIVE_RUN_LOCK])
        assert cursor.fetchone()[0] is True
        cursor.execute("SELECT pg_advisory_unlock_all()")


@postgres
def test_after_a_failure_a_published_file_goes_only_if_its_partition_is_seen_to_be_back(months, tmp_path) -> None:
    kept, removed = tmp_path / "dropped.csv.gz", tmp_path / "rolled_back.csv.gz"
    files = {}
    for name, final in (("sms_messagelog_209901", kept), (OLD, removed)):
        partial = partitions.archive_partial_path(final)
        partial.write_bytes(b"partial")
        final.write_bytes(b"published")
        files[name] = (partial, final)
    # sms_messagelog_209901 does not exist: its drop committed (say the COMMIT's reply was lost),
    # so its file is the archive. OLD is still there: rolled back, its file is no archive.
    partitions.archive_failure_cleanup(files)
    assert _files(tmp_path) == [kept]


@postgres
def test_a_late_report_for_an_archived_message_finds_nothing_and_stays(months) -> None:
    history.sms_log_archive(now=MID_MARCH)
    assert not MessageLog.objects.filter(provider_message_id="ATX-jan").exists()
    delivery_report_receive(provider_message_id="ATX-jan", status="Success", phone_number=OLD_TEXTS[103][0])
    assert log_reports_apply(provider_message_ids=["ATX-jan"]) == 0
    assert log_reports_apply() == 0
    messages_sweep()
    report = DeliveryReport.objects.get(provider_message_id="ATX-jan")
    assert report.status == "Success" and report.applied_at is None  # kept as received


@postgres
@pytest.mark.django_db(transaction=True)  # the fixture's partitions committed: their DDL locks gone
def test_a_late_report_never_locks_a_month_due_for_archive(months) -> None:
    # The archive holds a due partition in SHARE mode, then waits on the parent for DETACH: a report
    # transaction locking a row in that partition meanwhile would close a deadlock with it.
    _log(203, FEBRUARY + dt.timedelta(days=2), "+254712000203", "KPLC: Feb", status="sent", delivered_at=None,
         provider_message_id="ATX-feb")  # fmt: skip
    with time_machine.travel(MID_MARCH, tick=False), transaction.atomic():
        delivery_report_receive(provider_message_id="ATX-jan", status="Success", phone_number=OLD_TEXTS[103][0])
        delivery_report_receive(provider_message_id="ATX-feb", status="Success", phone_number="+254712000203")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relation::regclass::text, mode FROM pg_locks "
                "WHERE pid = pg_backend_pid() AND relation IS NOT NULL"
            )
            locked = set(cursor.fetchall())
    # ACCESS SHARE (a plain read) is harmless: only DETACH's ACCESS EXCLUSIVE conflicts with it,
    # and DETACH waits for the parent first. A row lock's ROW SHARE / ROW EXCLUSIVE is what must not be.
    row_locked = {name for name, mode in locked if mode in ("RowShareLock", "RowExclusiveLock")}
    assert RECENT in row_locked and OLD not in row_locked, sorted(locked)
    assert MessageLog.objects.get(pk=203).status == "delivered"
    assert MessageLog.objects.get(pk=103).status == "sent"  # past retention: the archive's, not settled
    assert DeliveryReport.objects.get(provider_message_id="ATX-jan").applied_at is None


@postgres
def test_the_command_and_the_daily_task_archive_the_sms_log(months, tmp_path) -> None:
    # The command runs at today's date: every 2025 month is past a 2-month retention by now.
    out = StringIO()
    call_command("archive_partitions", "--dry-run", stdout=out)
    printed = out.getvalue()
    assert "SMS log months before" in printed
    assert f"would archive {OLD}: 3 rows" in printed and f"would archive {RECENT}: 2 rows" in printed
    assert _exists(OLD) and _exists(RECENT) and not _files(tmp_path)

    out = StringIO()
    call_command("archive_partitions", stdout=out)
    assert f"archived {OLD}: 3 rows -> {tmp_path / 'sms_messagelog' / OLD}.csv.gz" in out.getvalue()
    assert not _exists(OLD) and not _exists(RECENT) and not MessageLog.objects.exists()
    assert set(ArchiveRecord.objects.values_list("partition", flat=True)) >= {OLD, RECENT}

    # The beat task runs the same archive: a month made since goes too.
    log_partitions_ensure(now=dt.datetime(2024, 6, 5, tzinfo=UTC), months_ahead=0)
    assert _exists("sms_messagelog_202406")
    assert archive_partitions_task() >= 1
    assert not _exists("sms_messagelog_202406")


@postgres
def test_a_failing_vend_archive_does_not_hold_the_sms_log(months, monkeypatch) -> None:
    def broken(**kwargs: Any) -> list[history.ArchiveResult]:
        raise RuntimeError("vend month does not add up")

    monkeypatch.setattr(history, "partitions_archive", broken)
    with pytest.raises(RuntimeError, match="vend month does not add up"):
        history.partitions_archive_all(now=MID_MARCH)
    assert not _exists(OLD) and ArchiveRecord.objects.filter(partition=OLD).exists()


def test_a_plain_log_has_nothing_to_archive(settings, tmp_path) -> None:
    """SQLite (and the portable statements on PostgreSQL): no partitions, nothing due, no file."""
    settings.ARCHIVE_DIR = tmp_path
    settings.SMS_LOG_MONTHS = 2
    _log(1, JANUARY + dt.timedelta(days=3), "+254712000001", "KPLC: hello")
    far = dt.datetime(2040, 1, 1, tzinfo=UTC)
    with portable_forced():
        assert log_partitions_due(now=far) == []
        assert log_partitions_archive(now=far, dry_run=True) == []
        assert log_partitions_archive(now=far, record=_record) == []
    assert MessageLog.objects.count() == 1 and not _files(tmp_path)
