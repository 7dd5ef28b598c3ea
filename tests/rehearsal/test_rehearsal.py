"""The campaign rehearsal end to end: `manage.py rehearse` as an operator runs it, in its own process,
on a scratch PostgreSQL database, with every fault on. It starts its own Redis, gateway, gunicorn,
Celery workers and beat, plays 2,000 customers through two simulated weeks and must find no
violation of any invariant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.db import connection

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _admin(sql: str) -> None:
    db = connection.settings_dict
    conn = psycopg2.connect(
        dbname="postgres",
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
    )
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


@pytest.fixture
def scratch_database():
    if connection.vendor != "postgresql":
        pytest.skip("a rehearsal runs on PostgreSQL only (its processes share one database)")
    if shutil.which("redis-server") is None:
        pytest.skip("the rehearsal starts its own redis-server, which is not installed")
    db = connection.settings_dict
    name = f"{db['NAME']}_rehearsal"
    _admin(f'DROP DATABASE IF EXISTS "{name}"')
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    yield f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.timeout(1200)
def test_a_small_campaign_with_faults_keeps_every_invariant(scratch_database, tmp_path: Path):
    out = tmp_path / "rehearsal"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.local",
        "DATABASE_URL": scratch_database,
        "KPLC_VAR_DIR": str(tmp_path / "var"),
        "CELERY_BROKER_URL": "",
        "DJANGO_DEBUG": "0",
    }
    days = 14
    command = [
        sys.executable, "manage.py", "rehearse", "--meters", "2000", "--days", str(days), "--capacity", "110",
        "--fail-rate", "0.1", "--kill-worker", "--redis-restart", "--seed", "7", "--out", str(out),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=1100)
    report_file = out / "report.json"
    assert report_file.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_file.read_text())
    broken = {name: count for name, count in report["invariants"].items() if count}
    # The message as text, whole: pytest would cut a tuple's repr before the examples that explain it.
    why = {"broken": broken, "errors": report["errors"][:10], "died": report["processes_died"], **report["details"]}
    assert broken == {}, json.dumps(why, default=str)[:8000]
    assert run.returncode == 0 and report["passed"] is True

    # The play really exercised what the invariants speak about.
    totals = report["totals"]
    assert totals["vends"] > 150 and totals["vends_with_codes"] > 40
    assert totals["scheduled"] == 14 * 110 and totals["notices_at_gateway"] > 1000
    assert totals["ussd_sessions"] > 10 and totals["partner_retries"] > 0
    funnel = report["details"]["funnel"]["dashboard"]
    assert funnel["codes_issued"] > 40 and funnel["confirmed"] > 5
    assert report["details"]["virtual_meters_on_new_key"] > 40
    gateway_failures = report["gateway"]["failures"]
    assert gateway_failures.get("http_500", 0) + gateway_failures.get("status_500", 0) > 20  # --fail-rate
    assert gateway_failures.get("status_403", 0) > 0 and gateway_failures.get("status_406", 0) > 0
    faults = [fault["fault"] for fault in report["faults"]]
    assert "worker_killed" in faults and "worker_restarted" in faults and "redis_restarted" in faults
    killed = next(fault for fault in report["faults"] if fault["fault"] == "worker_killed")
    assert killed["notices_sending"] > 0  # mid-batch: it held claimed notices

    # The outputs.
    rows = (out / "curve.csv").read_text().splitlines()
    assert len(rows) == days + 1 and rows[0].startswith("day,scheduled_total,")
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["capacity_at_kplc"]["peak_vends_per_second"] > 0
    assert set(report["per_day"][0]) >= {"day", "vends", "vend_p99_ms", "on_new_key_total", "kplc_updated_scaled"}
