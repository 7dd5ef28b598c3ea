"""The vend history on PostgreSQL: monthly partitions, replay across a partition boundary and
inside the window only, compaction, and the archive that proves its file before it drops a month
(docs/partitioning.md). Real PostgreSQL; skipped on SQLite, whose demo keeps plain tables."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from tests.vending.conftest import NAIROBI
from tokens import partitioning
from tokens.models import ArchiveRecord, IssuedToken, TidCounter, TokenDigest, Vend, VendReference
from tokens.services import history

pytestmark = pytest.mark.django_db

# Both inside KPLC's 2024 campaign (before the 1993 base date's TID rollover): a vend one minute
# before the end of July (Nairobi), a retry the next day, in August's partition.
END_OF_JULY = dt.datetime(2024, 7, 31, 23, 59, 0, tzinfo=NAIROBI)
NEXT_DAY = dt.datetime(2024, 8, 1, 12, 0, tzinfo=NAIROBI)
JULY = dt.datetime(2024, 7, 1, tzinfo=NAIROBI)
AUGUST = dt.datetime(2024, 8, 1, tzinfo=NAIROBI)


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("partitions exist on PostgreSQL only (the SQLite demo keeps plain tables)")


@pytest.fixture
def july_and_august() -> None:
    history.partitions_ensure_for(at=JULY)
    history.partitions_ensure_for(at=AUGUST)


def partition_of(model: type[Any], pk: int) -> str:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def test_history_tables_are_partitioned_with_the_key_in_the_primary_key() -> None:
    with connection.cursor() as cursor:
        for table in partitioning.HISTORY_TABLES:
            assert partitioning.is_partitioned(cursor, table), table
            cursor.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                [table.table],
            )
            assert cursor.fetchone()[0] == f"PRIMARY KEY (id, {table.key})"


def test_replay_across_a_partition_boundary_returns_the_first_response_byte_for_byte(
    vend, vending_keys, meter_factory, july_and_august
) -> None:
    meter = meter_factory()
    with time_machine.travel(END_OF_JULY, tick=False):
        first = vend(meter, reference="MONTH-END-1")
    assert first.status_code == 201
    sold = Vend.objects.get()
    assert partition_of(Vend, sold.pk) == "tokens_vend_p202407"
    assert partition_of(IssuedToken, sold.credit_token.pk) == "tokens_issuedtoken_p202407"
    assert partition_of(TokenDigest, TokenDigest.objects.get(issued_token_id=sold.credit_token.pk).pk) == (
        "care_tokendigest_p202407"
    )

    with time_machine.travel(NEXT_DAY, tick=False):
        again = vend(meter, reference="MONTH-END-1")
    assert again.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Vend.objects.count() == 1 and IssuedToken.objects.count() == 1
    assert VendReference.objects.get().vend_id == sold.pk


def test_a_concurrent_style_duplicate_insert_writes_nothing(vend, vending_keys, meter_factory, july_and_august) -> None:
    """The reference row decides: a second sale with a taken reference inserts no vend, no token,
    and leaves the TID counter where the first sale put it."""
    meter = meter_factory()
    with time_machine.travel(END_OF_JULY, tick=False):
        vend(meter, reference="DUP-1")
        counter = TidCounter.objects.get()
        with time_machine.travel(NEXT_DAY, tick=False):
            again = vend(meter, reference="DUP-1", amount="200.00")
    assert again.status_code == 409 and again.json()["error"]["code"] == "DUPLICATE_REFERENCE"
    assert Vend.objects.count() == IssuedToken.objects.count() == VendReference.objects.count() == 1
    assert TidCounter.objects.get().last_tid == counter.last_tid


def test_after_the_replay_window_the_body_is_compacted_and_a_retry_never_sells_twice(
    vend, vending_keys, meter_factory, july_and_august, settings, api
) -> None:
    settings.VEND_REPLAY_DAYS = 7
    meter = meter_factory()
    with time_machine.travel(END_OF_JULY, tick=False):
        first = vend(meter, reference="OLD-1")
        kept = vend(meter, reference="NEW-1")
    sold = Vend.objects.get(reference="OLD-1")
    Vend.objects.filter(reference="NEW-1").update(created_at=END_OF_JULY + dt.timedelta(days=3))

    # Day 7 + 1 minute after OLD-1: it is out of the window, NEW-1 (3 days younger) is not.
    at = END_OF_JULY + dt.timedelta(days=7, minutes=1)
    assert history.vend_bodies_compact(now=at) == 1
    assert history.vend_bodies_compact(now=at) == 0  # idempotent
    sold.refresh_from_db()
    assert sold.response_body == ""
    assert Vend.objects.get(reference="NEW-1").response_body == kept.content.decode()

    with time_machine.travel(at, tick=False):
        retry = vend(meter, reference="OLD-1")
        detail = api.get("/api/v1/vends/OLD-1/")
    assert retry.status_code == 410 and retry.json()["error"]["code"] == "RESPONSE_EXPIRED"
    assert detail.status_code == 410
    assert Vend.objects.count() == 2 and IssuedToken.objects.count() == 2
    assert first.status_code == 201


def test_partitions_ensure_is_idempotent_and_moves_rows_out_of_the_default(
    vend, vending_keys, meter_factory, settings
) -> None:
    june = dt.datetime(2024, 6, 20, 10, 0, tzinfo=NAIROBI)
    meter = meter_factory()
    assert not exists("tokens_vend_p202406")
    with time_machine.travel(june, tick=False):
        assert vend(meter, reference="JUNE-1").status_code == 201
    sold = Vend.objects.get()
    assert partition_of(Vend, sold.pk) == "tokens_vend_default"

    created = history.partitions_ensure(now=june, ahead=1)
    assert "tokens_vend_p202406" in created and "care_tokendigest_p202407" in created
    assert partition_of(Vend, sold.pk) == "tokens_vend_p202406"
    assert partition_of(IssuedToken, sold.credit_token.pk) == "tokens_issuedtoken_p202406"
    assert history.partitions_ensure(now=june, ahead=1) == []
    call_command("partitions_ensure", "--ahead", "1")  # today's months: idempotent too
    call_command("partitions_ensure", "--ahead", "1")


def test_a_tid_counter_never_goes_back(vend, vending_keys, meter_factory, july_and_august) -> None:
    meter = meter_factory()
    with time_machine.travel(END_OF_JULY, tick=False):
        vend(meter, reference="TID-1")
    counter = TidCounter.objects.get()
    for lower in (counter.last_tid, counter.last_tid - 1, None):
        with pytest.raises(IntegrityError), transaction.atomic():
            TidCounter.objects.filter(pk=counter.pk).update(last_tid=lower)
    TidCounter.objects.filter(pk=counter.pk).update(last_tid=counter.last_tid + 5)


def _read_archive(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="", encoding="utf-8") as text:
        return list(csv.DictReader(text))


def test_archive_exports_checks_and_drops_a_month_past_retention(
    vend, vending_keys, meter_factory, july_and_august, settings, tmp_path
) -> None:
    settings.ARCHIVE_DIR = tmp_path
    settings.VEND_HISTORY_MONTHS = 2  # in September, July goes and August stays
    meter, other = meter_factory(), meter_factory()
    with time_machine.travel(END_OF_JULY - dt.timedelta(days=2), tick=True):
        for n in range(3):
            assert vend(meter if n % 2 else other, reference=f"JUL-{n}").status_code == 201
    with time_machine.travel(NEXT_DAY, tick=True):
        assert vend(meter, reference="AUG-1").status_code == 201
    july_vends = {str(v.pk): v for v in Vend.objects.filter(reference__startswith="JUL-")}
    july_tokens = {str(t.pk): t for t in IssuedToken.objects.filter(vend__reference__startswith="JUL-")}
    assert len(july_vends) == len(july_tokens) == 3
    september = dt.datetime(2024, 9, 15, tzinfo=NAIROBI)

    dry = history.partitions_archive(now=september, dry_run=True)
    assert {(r.partition, r.rows) for r in dry} == {
        ("tokens_vend_p202407", 3),
        ("tokens_issuedtoken_p202407", 3),
        ("care_tokendigest_p202407", TokenDigest.objects.filter(created_at__lt=AUGUST).count()),
    }
    assert exists("tokens_vend_p202407") and ArchiveRecord.objects.count() == 0 and not any(tmp_path.iterdir())

    done = history.partitions_archive(now=september)
    assert {r.partition for r in done} == {r.partition for r in dry}
    for result in done:
        assert not exists(result.partition)
        record = ArchiveRecord.objects.get(partition=result.partition)
        path = Path(record.path)
        assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record.size_bytes == path.stat().st_size
        assert record.rows == result.rows == len(_read_archive(path))
        assert (record.range_start, record.range_end) == (JULY, AUGUST)

    # The files re-read to the very rows: every column of every vend and token.
    vends_file = {row["id"]: row for row in _read_archive(tmp_path / "tokens_vend" / "tokens_vend_p202407.csv.gz")}
    assert set(vends_file) == set(july_vends)
    for pk, row in vends_file.items():
        sold = july_vends[pk]
        assert row["reference"] == sold.reference and row["response_body"] == sold.response_body
        assert row["public_id"] == str(sold.public_id) and row["amount"] == str(sold.amount)
    tokens_file = _read_archive(tmp_path / "tokens_issuedtoken" / "tokens_issuedtoken_p202407.csv.gz")
    assert {row["id"]: row["digits"] for row in tokens_file} == {pk: t.digits for pk, t in july_tokens.items()}

    # What stays: August, its reference, and nothing of July in the database.
    assert list(Vend.objects.values_list("reference", flat=True)) == ["AUG-1"]
    assert list(VendReference.objects.values_list("reference", flat=True)) == ["AUG-1"]
    assert IssuedToken.objects.count() == 1
    assert history.partitions_archive(now=september) == []  # nothing left to do


def test_archive_leaves_a_partition_whose_counts_disagree(
    vend, vending_keys, meter_factory, july_and_august, settings, tmp_path
) -> None:
    settings.ARCHIVE_DIR = tmp_path
    settings.VEND_HISTORY_MONTHS = 2
    meter = meter_factory()
    with time_machine.travel(END_OF_JULY - dt.timedelta(days=1), tick=True):
        vend(meter, reference="JUL-A")
        vend(meter, reference="JUL-B")
    VendReference.objects.filter(reference="JUL-B").delete()  # a month whose references do not add up

    with pytest.raises(RuntimeError, match="2 vends but 1 references"):
        history.partitions_archive(now=dt.datetime(2024, 9, 15, tzinfo=NAIROBI))
    # Nothing of July went: not the vends, nor the tokens and digests exported before them.
    for table in partitioning.HISTORY_TABLES:
        assert exists(f"{table.table}_p202407")
    assert Vend.objects.count() == IssuedToken.objects.count() == 2
    assert not ArchiveRecord.objects.exists()
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]
    assert VendReference.objects.filter(reference="JUL-A").exists()  # the delete was rolled back


def test_archive_command_dry_run_writes_nothing(vend, vending_keys, meter_factory, settings, tmp_path) -> None:
    settings.ARCHIVE_DIR = tmp_path
    settings.VEND_HISTORY_MONTHS = 2
    history.partitions_ensure_for(at=dt.datetime(2020, 1, 15, tzinfo=NAIROBI))
    from io import StringIO

    out = StringIO()
    call_command("archive_partitions", "--dry-run", stdout=out)
    assert "would archive tokens_vend_p202001: 0 rows" in out.getvalue()
    assert exists("tokens_vend_p202001") and not any(tmp_path.iterdir())
