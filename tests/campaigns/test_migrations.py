"""The enrollment index diet (campaigns 0009) must not take the table away from the vends."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db


def _migration_sql(app: str, name: str) -> str:
    out = io.StringIO()
    call_command("sqlmigrate", app, name, stdout=out)
    return out.getvalue()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the lock it avoids is PostgreSQL's")
def test_the_index_diet_touches_no_foreign_key_and_runs_outside_a_transaction() -> None:
    sql = _migration_sql("campaigns", "0009_enrollment_index_diet")
    # AlterField(db_index=False) would DROP CONSTRAINT and re-add (and re-validate) each FK while a
    # plain DROP INDEX holds ACCESS EXCLUSIVE on a table of millions of rows.
    assert "FOREIGN KEY" not in sql and "DROP CONSTRAINT" not in sql
    assert "BEGIN;" not in sql  # atomic = False: DROP INDEX CONCURRENTLY refuses a transaction


def test_after_the_diet_the_enrollment_keeps_its_foreign_keys_and_loses_the_three_indexes() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "campaigns_enrollment")
    foreign_keys = {tuple(info["columns"]) for info in constraints.values() if info["foreign_key"]}
    assert foreign_keys == {("batch_id",), ("campaign_id",), ("meter_id",)}
    plain_indexes = sorted(
        tuple(info["columns"])
        for info in constraints.values()
        if info["index"] and not info["unique"] and not info["primary_key"]
    )
    # Meter once (its FK index), batch and campaign only as the leading column of a wider index.
    assert plain_indexes == [("batch_id", "state"), ("campaign_id", "state"), ("meter_id",)]
