"""The replica router against a real streaming replica.

The test makes its own primary (initdb, on a free port) and a streaming replica of it
(pg_basebackup -R, another free port), migrates and seeds the primary, and runs two gunicorn
servers with DATABASE_URL = the primary and DATABASE_REPLICA_URL = the replica: one that tolerates
an hour of lag and one that tolerates a few seconds. Replay on the replica is paused with
pg_wal_replay_pause() so that the replica visibly differs from the primary: a dashboard figure then
shows the replica's (old) value while a vend for a meter the replica has never seen succeeds.

It runs whenever the suite runs on PostgreSQL (CI): missing PostgreSQL server binaries there are a
failure, not a skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from tests.pgcluster import Cluster, cluster_root, free_port, wait_until
from tests.support import REDIS_URL, needs_postgres_and_redis, process_group_stop
from tokens.sts import luhn_check_digit

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
DB = "kplc"
PASSWORD = "replica-test-pass"
STRICT_LAG = 4.0  # seconds the strict server tolerates

SEED = """
from decimal import Decimal
from django.contrib.auth.models import Group, User
from accounts.roles import CAMPAIGN_MANAGER, roles_sync
from meters.models import Meter
from partners.services import partner_api_key_create, partner_create
from tests.vending.factories import load_vending_keys
roles_sync()
load_vending_keys()
user = User.objects.create_user("manager", password=%(password)r, is_staff=True)
user.groups.add(Group.objects.get(name=CAMPAIGN_MANAGER))
Meter.objects.create(meter_number=%(meter)r, sgc="600675", ti=1, krn=2, kt=2, ea="07", dkga="02",
    base_date=2014, key_state="confirmed", customer_name="Template", phone="+254700000001", region="Nairobi")
partner = partner_create(name="Replica Bank", daily_limit=Decimal("100000000.00"), actor_label="test")
print(partner_api_key_create(partner=partner, actor_label="test")[1])
"""


def meter_number(n: int) -> str:
    body = f"58{n:08d}"
    return body + str(luhn_check_digit(body))


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.primary = Cluster("primary", root)
        self.replica = Cluster("replica", root)
        self.servers: dict[str, Server] = {}
        self.api_key = ""
        self.meters = 0
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="kplc_sts.settings.local",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            STS_KEK=secrets.token_hex(32),
            DATABASE_URL=self.primary.url(DB),
            DATABASE_REPLICA_URL=self.replica.url(DB),
            REPLICA_CHECK_SECONDS="0",  # every lag-tolerant request measures: the test moves the lag at will
            CELERY_BROKER_URL=REDIS_URL,  # the vend's SMS are queued there; no worker sends them
            CACHE_URL="",
            KPLC_VAR_DIR=str(root / "var"),
            LOG_FORMAT="plain",
            LOG_LEVEL="INFO",
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            PYTHONPATH=str(ROOT),
        )

    # --- set-up ------------------------------------------------------------------------------------

    def build(self) -> None:
        # fsync off: a throwaway cluster; streaming and replay do not depend on it. synchronous_commit
        # stays on, as in production: an asynchronous commit can sit in WAL buffers past
        # pg_current_wal_lsn() (the write position) where the walsender does not see it, and then
        # `caught_up` returns, and a paused replica stays, one commit short.
        self.primary.initdb({"fsync": "off"}).start()
        self.primary.query(f"CREATE DATABASE {DB}")
        self.manage("migrate", "-v", "0")
        out = self.manage("shell", "-c", SEED % {"password": PASSWORD, "meter": meter_number(0)})
        self.api_key = out.strip().splitlines()[-1]
        # The replica is made after the seed so that it starts with everything.
        self.replica.basebackup_from(self.primary, {"hot_standby_feedback": "on"}).start()
        self.caught_up()
        self.servers["tolerant"] = self.serve("tolerant", max_lag="3600")
        self.servers["strict"] = self.serve("strict", max_lag=str(STRICT_LAG))
        for server in self.servers.values():
            wait_until(lambda s=server: self.healthy(s), 60, what=f"gunicorn on {server.port}")

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(PYTHON), "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def serve(self, name: str, *, max_lag: str) -> Server:
        port = free_port()
        log = self.root / f"gunicorn-{name}.log"
        process = subprocess.Popen(
            [str(GUNICORN), "kplc_sts.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
            + ["--threads", "2", "--worker-class", "gthread", "--log-level", "warning"],
            cwd=ROOT,
            env={**self.env, "REPLICA_MAX_LAG_SECONDS": max_lag},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return Server(process, port, log)

    def healthy(self, server: Server) -> bool:
        assert server.process.poll() is None, server.log.read_text()[-3000:]
        try:
            return urllib.request.urlopen(server.url("/healthz"), timeout=2).status == 200
        except OSError:
            return False

    def close(self) -> None:
        for server in self.servers.values():
            process_group_stop(server.process)
        self.replica.stop("immediate")
        self.primary.stop("immediate")

    # --- the replica ---------------------------------------------------------------------------------

    def caught_up(self) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        target = self.primary.query("SELECT pg_current_wal_lsn()::text")[0][0]
        wait_until(
            lambda: self.replica.query("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s) >= 0", (target,))[0][0],
            60,
            what="the replica to replay",
        )

    def pause_replay(self) -> None:
        # A fresh commit replayed just before the pause: the replica's lag counts from now.
        self.primary.query("SELECT txid_current()")
        self.caught_up()
        self.replica.query("SELECT pg_wal_replay_pause()")
        wait_until(lambda: self.replica.query("SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused", 30)

    def resume_replay(self) -> None:
        self.replica.query("SELECT pg_wal_replay_resume()")
        self.caught_up()

    # --- the application ---------------------------------------------------------------------------

    def new_meter(self) -> str:
        """A copy of the template meter under a new number, written to the primary only."""
        self.meters += 1
        number = meter_number(self.meters)
        columns = [
            row[0]
            for row in self.primary.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'meters_meter'"
                " AND column_name NOT IN ('id', 'meter_number', 'account_number') ORDER BY ordinal_position",
                db=DB,
            )
        ]
        listed = ", ".join(columns)
        self.primary.query(
            f"INSERT INTO meters_meter (meter_number, account_number, {listed}) "
            f"SELECT %s, %s, {listed} FROM meters_meter WHERE meter_number = %s",
            (number, f"R{self.meters}", meter_number(0)),
            db=DB,
        )
        return number

    def vend(self, server: Server, number: str) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"meter_number": number, "amount": "150.00", "reference": secrets.token_hex(8)}).encode()
        request = urllib.request.Request(
            server.url("/api/v1/vends/"),
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Api-Key {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def primary_vends(self) -> int:
        return int(self.primary.query("SELECT COALESCE(SUM(vends), 0) FROM dashboard_vendminutestat", db=DB)[0][0])

    def on_replica(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        return self.replica.query(sql, params, db=DB)[0][0]


class StaffBrowser:
    """A signed-in manager: the login form, its CSRF cookie and the session cookie."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.opener.open(server.url("/accounts/login/"), timeout=30).read()
        jar = self.opener.handlers
        token = next(
            c.value
            for h in jar
            if isinstance(h, urllib.request.HTTPCookieProcessor)
            for c in h.cookiejar
            if c.name == "csrftoken"
        )
        form = urllib.parse.urlencode({"username": "manager", "password": PASSWORD, "csrfmiddlewaretoken": token})
        request = urllib.request.Request(
            server.url("/accounts/login/"), data=form.encode(), headers={"Referer": server.url("/accounts/login/")}
        )
        landed = self.opener.open(request, timeout=30)
        assert "/accounts/login/" not in landed.geturl(), "the manager could not sign in"

    def get(self, path: str) -> tuple[int, bytes]:
        with self.opener.open(self.server.url(path), timeout=30) as response:
            return response.status, response.read()

    def vends_last_hour(self) -> int:
        status, body = self.get("/dashboard/vending/data.json")
        assert status == 200
        return sum(json.loads(body)["vends"])


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    needs_postgres_and_redis("the streaming replica test runs on PostgreSQL (CI has its server binaries)")
    assert shutil.which("runuser") or os.geteuid() != 0, "as root the clusters run through runuser"
    root = cluster_root("kplc-replica-")
    built = Stack(root)
    try:
        built.build()
        yield built
    except BaseException:
        for name in ("primary", "replica", "gunicorn-tolerant", "gunicorn-strict"):
            log = root / f"{name}.log"
            if log.exists():
                sys.stderr.write(f"--- {name}.log ---\n{log.read_text(errors='replace')[-4000:]}\n")
        raise
    finally:
        built.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browsers(stack: Stack) -> dict[str, StaffBrowser]:
    return {name: StaffBrowser(server) for name, server in stack.servers.items()}


def test_the_dashboard_reads_the_replica_and_a_vend_never_does(stack, browsers):
    tolerant = browsers["tolerant"]
    before = stack.primary_vends()
    assert tolerant.vends_last_hour() == before
    stack.pause_replay()
    try:
        number = stack.new_meter()  # on the primary only: the replica is not replaying
        assert stack.on_replica("SELECT count(*) FROM meters_meter WHERE meter_number = %s", (number,)) == 0

        status, body = stack.vend(stack.servers["tolerant"], number)

        # The vend found the meter the replica has never seen, and its tokens: it read the primary.
        assert status == 201, body
        assert body["meter_number"] == number and body["tokens"]
        assert stack.primary_vends() == before + 1
        # The dashboard, on the same server a moment later, shows the replica's figure: the old one.
        assert stack.on_replica("SELECT COALESCE(SUM(vends), 0) FROM dashboard_vendminutestat") == before
        assert tolerant.vends_last_hour() == before
        status, page = tolerant.get("/dashboard/vending/")
        assert status == 200 and b"Vending" in page
    finally:
        stack.resume_replay()
    # Replayed: the dashboard catches up with the primary.
    assert tolerant.vends_last_hour() == before + 1


def test_a_replica_further_behind_than_allowed_is_left_for_the_primary(stack, browsers):
    strict, tolerant = browsers["strict"], browsers["tolerant"]
    stack.pause_replay()
    try:
        before = stack.primary_vends()
        status, body = stack.vend(stack.servers["strict"], stack.new_meter())
        assert status == 201, body
        # Past the strict server's threshold (the replica replayed its last commit before the pause).
        time.sleep(STRICT_LAG + 1.5)
        assert stack.on_replica("SELECT COALESCE(SUM(vends), 0) FROM dashboard_vendminutestat") == before
        assert strict.vends_last_hour() == before + 1  # the primary's figure
        assert tolerant.vends_last_hour() == before  # an hour of lag allowed: still the replica
        assert strict.vends_last_hour() == before + 1
    finally:
        stack.resume_replay()
    wait_until(lambda: strict.vends_last_hour() == stack.primary_vends(), 30, what="the strict server")
    log = stack.servers["strict"].log.read_text()
    assert log.count("reading lag-tolerant pages from the primary") >= 1
    assert "more than REPLICA_MAX_LAG_SECONDS=4" in log


def test_a_replica_that_is_down_leaves_every_page_working_from_the_primary(stack, browsers):
    tolerant = browsers["tolerant"]
    log = stack.servers["tolerant"].log
    warnings_before = log.read_text().count("replica unreachable")
    stack.replica.stop("immediate")
    try:
        status, body = stack.vend(stack.servers["tolerant"], stack.new_meter())
        assert status == 201, body
        for _ in range(3):
            assert tolerant.vends_last_hour() == stack.primary_vends()
        for path in ("/dashboard/vending/", "/dashboard/batches/", "/dashboard/export/campaigns.csv"):
            assert tolerant.get(path)[0] == 200, path
        # Logged once for the outage, not once per request.
        assert log.read_text().count("replica unreachable") == warnings_before + 1
    finally:
        stack.replica.start()
    stack.caught_up()
    wait_until(
        lambda: tolerant.vends_last_hour() >= 0 and "from the replica again" in log.read_text(),
        30,
        what="the server to use the replica again",
    )
    stack.pause_replay()
    try:
        before = stack.primary_vends()
        assert stack.vend(stack.servers["tolerant"], stack.new_meter())[0] == 201
        assert tolerant.vends_last_hour() == before  # back on the (paused) replica
    finally:
        stack.resume_replay()
