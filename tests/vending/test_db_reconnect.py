"""Finding 5: after PostgreSQL dropped the idle connections (a restart, a failover, an idle timeout),
the next requests on gunicorn's persistent connections failed with 503. Health checks notice a dead
connection at the start of a request and reconnect, so the next vend succeeds.

A real gunicorn under production settings holds the connections (Django's test client skips the
per-request connection handling, so it cannot show this); PostgreSQL kills them with
pg_terminate_backend, as a restart would."""

from __future__ import annotations

import json

import psycopg2
import pytest
from django.db import connection

from tests.security.live_gunicorn import live_gunicorn
from tests.support import needs_postgres_and_redis
from tests.vending.factories import load_vending_keys, make_partner

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _requirements():
    needs_postgres_and_redis("pg_terminate_backend is PostgreSQL's; CI runs this on PostgreSQL")


def terminate_other_backends() -> int:
    db = connection.settings_dict
    killer = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
        password=db.get("PASSWORD") or None,
    )  # fmt: skip
    try:
        killer.autocommit = True
        with killer.cursor() as cursor:
            cursor.execute(
                # With a timeout it returns once each backend has exited, as a restart ends them all before it
                # serves again (without it, a request could reach a backend still dying).
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]
    finally:
        killer.close()


def test_the_next_vends_succeed_after_the_database_killed_every_connection(tmp_path, meter_factory):
    load_vending_keys()
    _partner, key = make_partner()
    # Already on the 2014 key (krn 2): a plain credit vend at today's date, whatever the clock says.
    meters = [meter_factory.create(krn=2, base_date=2014, key_state="confirmed") for _ in range(3)]
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

    def vend(n: int) -> int:
        body = {"meter_number": meters[n % 3].meter_number, "amount": "100.00", "reference": f"PG-{n}"}
        status, _headers, content = server.request("POST", "/api/v1/vends/", json.dumps(body).encode(), headers)
        assert status in (201, 503), content
        return status

    with live_gunicorn(tmp_path) as server:
        assert [vend(n) for n in range(8)] == [201] * 8  # warms persistent connections in the workers
        connection.close()  # ours too: the test's own connection would be killed with the rest
        assert terminate_other_backends() >= 1
        statuses = [vend(n) for n in range(8, 26)]
    assert statuses == [201] * 18
