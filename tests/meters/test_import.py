"""import_meters: rejects with line numbers and reasons, good rows loaded, re-runs update."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from audit.models import AuditEvent
from kplc_sts.db import portable_forced
from meters.models import Meter
from meters.services import HEADER, MeterImportError, meter_import
from tests.factories import luhn_complete

from .conftest import read_rejects

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
GOOD_A = luhn_complete("5400000001")
GOOD_B = luhn_complete("540000000200")  # 13 digits
GOOD_C = luhn_complete("5400000003")
BAD_LUHN = GOOD_C[:-1] + str((int(GOOD_C[-1]) + 1) % 10)


def meter_row(number: str, **overrides: str) -> list[str]:
    values = {
        "meter_number": number,
        "sgc": "600675",
        "ti": "1",
        "krn": "1",
        "kt": "2",
        "ea": "07",
        "dkga": "02",
        "base_date": "1993",
        "ken": "255",
        "account_number": "ACC" + number[-6:],
        "customer_name": "Wanjiru Kamau",
        "phone": "0712 345 678",
        "region": "Nairobi",
    }
    values.update(overrides)
    return [values[column] for column in HEADER]


MIXED_ROWS = [
    meter_row(GOOD_A, phone="0712 345 678"),  # line 2
    meter_row(BAD_LUHN),  # line 3
    meter_row(luhn_complete("5400000004"), ea="08"),  # line 4
    meter_row(luhn_complete("5400000005"), phone="12345"),  # line 5
    meter_row(GOOD_A, customer_name="Second copy"),  # line 6
    meter_row(GOOD_B, phone="254 733-000-111", ea="11", dkga="04", base_date="2014", krn="2", ti="42"),  # 7
    meter_row(luhn_complete("5400000006"), dkga="03"),  # line 8
    meter_row(luhn_complete("5400000007"), base_date="2000"),  # line 9
    meter_row(luhn_complete("5400000008"), sgc="60067"),  # line 10
    meter_row(luhn_complete("5400000009"))[:12],  # line 11: a field short
    # line 12: free text that COPY would misread if it were not escaped
    meter_row(GOOD_C, customer_name='O\'Brien, "Tab\there" back\\slash', phone="+254110000222", region="Mombasa"),
    meter_row(luhn_complete("5400000010"), krn="0"),  # line 13
    meter_row(luhn_complete("5400000011"), ken="256"),  # line 14
    meter_row(luhn_complete("5400000012"), kt="4"),  # line 15
    meter_row(luhn_complete("5400000013"), ti="100"),  # line 16
    meter_row(GOOD_A, phone="0799 999 999"),  # line 17: a second duplicate, still of line 2
]
EXPECTED_REJECTS = [
    (3, BAD_LUHN, f"bad Luhn check digit (expected {GOOD_C[-1]})"),
    (4, luhn_complete("5400000004"), "unknown EA '08'"),
    (5, luhn_complete("5400000005"), "malformed phone '12345'"),
    (6, GOOD_A, "duplicate of line 2"),
    (8, luhn_complete("5400000006"), "unknown DKGA '03'"),
    (9, luhn_complete("5400000007"), "bad base date '2000' (1993, 2014 or 2035)"),
    (10, luhn_complete("5400000008"), "SGC must be 6 digits, got '60067'"),
    (11, luhn_complete("5400000009"), "expected 13 fields, got 12"),
    (13, luhn_complete("5400000010"), "KRN must be 1..9, got '0'"),
    (14, luhn_complete("5400000011"), "KEN must be 0..255, got '256'"),
    (15, luhn_complete("5400000012"), "key type must be 0..3, got '4'"),
    (16, luhn_complete("5400000013"), "tariff index must be 0..99, got '100'"),
    (17, GOOD_A, "duplicate of line 2"),
]


def test_mixed_file_loads_good_rows_and_reports_each_bad_row(write_csv) -> None:
    path = write_csv(MIXED_ROWS)

    result = meter_import(path=path)

    assert read_rejects(path.with_name("meters.rejects.csv")) == EXPECTED_REJECTS
    assert result.rejects_path == path.with_name("meters.rejects.csv")
    assert (result.rows_read, result.inserted, result.updated, result.unchanged, result.rejected) == (16, 3, 0, 0, 13)
    assert sorted(Meter.objects.values_list("meter_number", flat=True)) == sorted([GOOD_A, GOOD_B, GOOD_C])

    first = Meter.objects.get(meter_number=GOOD_A)
    assert first.customer_name == "Wanjiru Kamau"  # the first occurrence wins over later duplicates
    assert first.phone == "+254712345678"
    assert (first.iin, first.sgc, first.ti, first.krn, first.kt) == ("600727", "600675", 1, 1, 2)
    assert (first.ea, first.dkga, first.base_date, first.ken, first.region) == ("07", "02", 1993, 255, "Nairobi")
    assert (first.status, first.key_state) == (Meter.Status.ACTIVE, Meter.KeyState.OLD_KEY)

    thirteen = Meter.objects.get(meter_number=GOOD_B)
    assert (thirteen.iin, thirteen.phone, thirteen.ea, thirteen.dkga) == ("0000", "+254733000111", "11", "04")
    assert (thirteen.base_date, thirteen.krn, thirteen.ti) == (2014, 2, 42)

    escaped = Meter.objects.get(meter_number=GOOD_C)
    assert escaped.customer_name == 'O\'Brien, "Tab\there" back\\slash'
    assert escaped.phone == "+254110000222"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("0712 345 678", "+254712345678"),
        ("0712-345-678", "+254712345678"),
        ("254712345678", "+254712345678"),
        ("+254 712 345 678", "+254712345678"),
        ("712345678", "+254712345678"),
        ("0110 123 456", "+254110123456"),
        ("", ""),
    ],
)
def test_phone_numbers_are_normalised_to_e164(write_csv, raw: str, normalised: str) -> None:
    call_command("import_meters", str(write_csv([meter_row(GOOD_A, phone=raw)])), stdout=io.StringIO())
    assert Meter.objects.get(meter_number=GOOD_A).phone == normalised


@pytest.mark.parametrize("raw", ["12345", "0812 345 678", "+255712345678", "07123456789", "phone"])
def test_malformed_phones_are_rejected(write_csv, raw: str) -> None:
    path = write_csv([meter_row(GOOD_A, phone=raw)])
    result = meter_import(path=path)
    assert result.rejected == 1
    assert read_rejects(result.rejects_path) == [(2, GOOD_A, f"malformed phone {raw!r}")]
    assert not Meter.objects.exists()


def test_rerun_updates_register_fields_and_never_duplicates(write_csv) -> None:
    path = write_csv(MIXED_ROWS)
    meter_import(path=path)
    # Campaign progress made between the two imports must survive the re-import.
    Meter.objects.filter(meter_number=GOOD_A).update(status=Meter.Status.BLOCKED, key_state=Meter.KeyState.CONFIRMED)

    again = meter_import(path=path)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 13)

    changed = [list(row) for row in MIXED_ROWS]
    changed[0] = meter_row(GOOD_A, phone="0722 000 000", customer_name="Wanjiru K. Kamau", region="Nyeri")
    changed.append(meter_row(luhn_complete("5400000099")))
    result = meter_import(path=write_csv(changed, name="changed.csv"))

    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 2)
    assert Meter.objects.count() == 4
    assert Meter.objects.filter(meter_number=GOOD_A).count() == 1
    meter = Meter.objects.get(meter_number=GOOD_A)
    assert (meter.phone, meter.customer_name, meter.region) == ("+254722000000", "Wanjiru K. Kamau", "Nyeri")
    assert (meter.status, meter.key_state) == (Meter.Status.BLOCKED, Meter.KeyState.CONFIRMED)


def test_command_prints_a_summary_and_writes_rejects_where_asked(write_csv, tmp_path: Path) -> None:
    path = write_csv(MIXED_ROWS)
    rejects = tmp_path / "out" / "bad.csv"
    rejects.parent.mkdir()
    stdout = io.StringIO()

    call_command("import_meters", str(path), "--rejects", str(rejects), stdout=stdout)

    assert "16 rows read: 3 inserted, 0 updated, 0 unchanged, 13 rejected" in stdout.getvalue()
    assert f"Rejected rows: {rejects}" in stdout.getvalue()
    assert read_rejects(rejects) == EXPECTED_REJECTS
    assert not path.with_name("meters.rejects.csv").exists()


def test_clean_file_leaves_no_rejects_file_and_clears_a_stale_one(write_csv) -> None:
    path = write_csv([meter_row(GOOD_A)])
    stale = path.with_name("meters.rejects.csv")
    stale.write_text("line,meter_number,reason\n9,123,old\n")

    result = meter_import(path=path)

    assert (result.inserted, result.rejected, result.rejects_path) == (1, 0, None)
    assert not stale.exists()


def test_import_is_audited(write_csv) -> None:
    meter_import(path=write_csv(MIXED_ROWS), actor_label="command:import_meters:ops")
    event = AuditEvent.objects.get(action="meters.imported")
    assert event.actor_label == "command:import_meters:ops"
    assert event.details["rows_read"] == 16
    assert (event.details["inserted"], event.details["rejected"]) == (3, 13)


def test_header_is_matched_case_and_space_insensitively_and_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    header = ", ".join(column.upper() for column in HEADER)
    path.write_bytes(("\ufeff" + header + "\r\n" + ",".join(meter_row(GOOD_A)) + "\r\n\r\n").encode())
    result = meter_import(path=path)
    assert (result.rows_read, result.inserted, result.rejected) == (1, 1, 0)


def test_multi_line_record_is_reported_at_its_first_line(write_csv) -> None:
    path = write_csv([meter_row(GOOD_A, customer_name="two\nlines"), meter_row(BAD_LUHN)])
    result = meter_import(path=path)
    assert Meter.objects.get(meter_number=GOOD_A).customer_name == "two\nlines"
    assert read_rejects(result.rejects_path) == [(4, BAD_LUHN, f"bad Luhn check digit (expected {GOOD_C[-1]})")]


def test_invalid_utf8_rejects_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    good = ",".join(meter_row(GOOD_A)).encode()
    bad = ",".join(meter_row(GOOD_C, customer_name="Ren\xe9")).encode("latin-1")
    path.write_bytes(",".join(HEADER).encode() + b"\n" + good + b"\n" + bad + b"\n")
    result = meter_import(path=path)
    assert read_rejects(result.rejects_path) == [(3, GOOD_C, "text is not valid UTF-8")]
    assert list(Meter.objects.values_list("meter_number", flat=True)) == [GOOD_A]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("", "is empty"),
        ("meter,phone\n1,2\n", "wrong header"),
        (",".join(HEADER[:-1]) + "\n", "wrong header"),
    ],
)
def test_unreadable_file_raises_command_error_and_loads_nothing(tmp_path: Path, content, message) -> None:
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_meters", str(path), stdout=io.StringIO())
    with pytest.raises(MeterImportError):
        meter_import(path=path)
    assert not Meter.objects.exists()
    assert not AuditEvent.objects.filter(action="meters.imported").exists()


@pytest.mark.parametrize("content", [None, "meter,phone\n"])
def test_unreadable_file_exits_non_zero(tmp_path: Path, content) -> None:
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_text(content)
    env = {**os.environ, "KPLC_VAR_DIR": str(tmp_path / "var")}
    done = subprocess.run(
        [sys.executable, "manage.py", "import_meters", str(path)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "CommandError:" in done.stderr


def test_a_file_with_only_bad_rows_still_succeeds(write_csv) -> None:
    stdout = io.StringIO()
    call_command("import_meters", str(write_csv([meter_row(BAD_LUHN)])), stdout=stdout)
    assert "1 rows read: 0 inserted, 0 updated, 0 unchanged, 1 rejected" in stdout.getvalue()


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="compares the COPY loader with the portable one; elsewhere only the portable one runs",
)
def test_copy_and_portable_loaders_load_and_reject_alike(write_csv, tmp_path):
    first = write_csv(MIXED_ROWS, name="first.csv")
    fresh = luhn_complete("5400000099")
    again = write_csv([meter_row(GOOD_A, customer_name="Renamed"), meter_row(fresh)], name="again.csv")

    def load() -> list[object]:
        with transaction.atomic():
            results = [meter_import(path=first), meter_import(path=again)]
            seen = [
                [(r.rows_read, r.inserted, r.updated, r.unchanged, r.rejected) for r in results],
                read_rejects(results[0].rejects_path),
                sorted(Meter.objects.values_list("meter_number", "customer_name", "phone", "krn", "ea", "region")),
            ]
            transaction.set_rollback(True)
        return seen

    native = load()
    with portable_forced():
        portable = load()
    assert portable == native
    assert native[0][1][1:3] == (1, 1)  # the second file inserts one meter and updates the other
