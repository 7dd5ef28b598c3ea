"""The hot tables' storage parameters (kplc_sts/pgtuning.py) as the migrations leave them on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection

from kplc_sts.pgtuning import HOT_TABLES, storage_apply, storage_reset

pytestmark = pytest.mark.django_db


def reloptions(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return dict(option.split("=", 1) for option in (row[0] or []))


def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("storage parameters are PostgreSQL's (SQLite keeps plain tables)")


def test_every_hot_table_carries_its_parameters_after_migrate():
    _postgres_only()
    for table, params in HOT_TABLES.items():
        found = reloptions(table)
        assert found == {key: str(value) for key, value in params.items()}, table


def test_a_partitioned_hot_table_gets_them_on_each_partition_and_loses_them_on_reset():
    _postgres_only()
    from django.db import connection as conn

    with conn.cursor() as cursor:
        cursor.execute("ALTER TABLE tokens_vend RENAME TO tokens_vend_plain")
        cursor.execute("CREATE TABLE tokens_vend (id bigint, day date) PARTITION BY RANGE (day)")
        cursor.execute(
            "CREATE TABLE tokens_vend_a PARTITION OF tokens_vend FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')"
        )
        cursor.execute(
            "CREATE TABLE tokens_vend_b PARTITION OF tokens_vend FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')"
        )
    with conn.schema_editor() as editor:
        storage_apply(editor, ["tokens_vend"])
    assert reloptions("tokens_vend_a") == reloptions("tokens_vend_b") == reloptions("tokens_vend_plain")
    assert reloptions("tokens_vend_a")["autovacuum_vacuum_insert_threshold"] == "100000"
    with conn.schema_editor() as editor:
        storage_reset(editor, ["tokens_vend"])
    assert reloptions("tokens_vend_a") == {}
    assert reloptions("tokens_vend_plain")  # not a leaf of the partitioned table: untouched
