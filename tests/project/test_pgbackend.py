"""The health check that asks the socket (kplc_sts/pgbackend): an idle, healthy connection is
usable without a query; one the server ended is not, and one with something unread is asked."""

from __future__ import annotations

import psycopg2
import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoWrapper

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the backend is PostgreSQL's; CI runs this on PostgreSQL")


def _server_ends(pid: int) -> None:
    db = connection.settings_dict
    killer = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432
    )
    try:
        killer.autocommit = True
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            assert cursor.fetchone()[0] is True
    finally:
        killer.close()


def test_an_idle_healthy_connection_is_usable_without_a_query(monkeypatch: pytest.MonkeyPatch) -> None:
    assert connection.settings_dict["ENGINE"] == "kplc_sts.pgbackend"
    connection.ensure_connection()
    asked = []
    monkeypatch.setattr(DjangoWrapper, "is_usable", lambda self: asked.append(1) or True)
    assert connection.is_usable() is True
    assert asked == []


def test_a_connection_the_server_ended_is_not_usable_and_the_next_query_reconnects() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    _server_ends(pid)
    assert connection.is_usable() is False
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_a_connection_inside_a_transaction_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    connection.ensure_connection()
    asked = []
    monkeypatch.setattr(DjangoWrapper, "is_usable", lambda self: asked.append(1) or True)
    connection.connection.cursor().execute("BEGIN")
    try:
        assert connection.is_usable() is True
        assert asked == [1]
    finally:
        connection.connection.rollback()
