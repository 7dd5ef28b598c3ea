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


def leaves(table: str) -> list[str]:
    """The table itself, or every partition of it when it is partitioned (tokens' history tables)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s) ORDER BY 1",
            [table],
        )
        found = [row[0] for row in cursor.fetchall()]
    return found or [table]


def test_every_hot_table_carries_its_parameters_after_migrate():
    _postgres_only()
    for table, params in HOT_TABLES.items():
        for leaf in leaves(table):
            assert reloptions(leaf) == {key: str(value) for key, value in params.items()}, leaf


def test_a_partitioned_hot_table_gets_them_on_each_partition_new_ones_included_and_loses_them_on_reset():
    _postgres_only()
    import datetime as dt

    from tokens.partitioning import VEND, month_start, partition_create

    vends = VEND
    before = leaves("tokens_vend")
    assert len(before) > 1  # partitioned on PostgreSQL
    with connection.cursor() as cursor:
        created = partition_create(cursor, vends, month_start(dt.datetime(2040, 5, 1, tzinfo=dt.UTC)))
    assert created
    after = leaves("tokens_vend")
    assert len(after) == len(before) + 1
    expected = {key: str(value) for key, value in HOT_TABLES["tokens_vend"].items()}
    assert all(reloptions(leaf) == expected for leaf in after)
    with connection.schema_editor() as editor:
        storage_reset(editor, ["tokens_vend"])
    assert all(reloptions(leaf) == {} for leaf in after)
    with connection.schema_editor() as editor:
        storage_apply(editor, ["tokens_vend"])
    assert all(reloptions(leaf) == expected for leaf in after)
