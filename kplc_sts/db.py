"""The one place that asks which database this is, and the statements every app shares.

Apps keep their PostgreSQL-only statements in a private `_pg.py` and the portable twin (any
database Django supports, SQLite for the demo and `make test`) in `_portable.py`, with the same
function signatures. `by_vendor` picks one per call, so the rules never ask which database they
are on, and `portable_forced` lets a parity test run the portable twin on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from django.db import DatabaseError, connection, models, transaction

_forced = threading.local()
logger = logging.getLogger(__name__)


def is_postgres() -> bool:
    """Whether the PostgreSQL statements apply (LATERAL joins, data-modifying CTEs, COPY...)."""
    return connection.vendor == "postgresql" and not getattr(_forced, "portable", False)


@contextlib.contextmanager
def portable_forced() -> Iterator[None]:
    """Run the portable statements even on PostgreSQL (parity tests compare the two)."""
    previous = getattr(_forced, "portable", False)
    _forced.portable = True
    try:
        yield
    finally:
        _forced.portable = previous


class by_vendor:
    """A module-like object whose attributes come from `pg` on PostgreSQL and `portable` elsewhere."""

    def __init__(self, *, pg: ModuleType, portable: ModuleType) -> None:
        self._pg, self._portable = pg, portable

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pg if is_postgres() else self._portable, name)


@contextlib.contextmanager
def transaction_joined() -> Iterator[None]:
    """A transaction of its own when called outside one; inside the caller's, no savepoint.

    For steps that run inside a vend's (or a USSD session's) transaction and raise only before
    they write: a savepoint there costs two round trips (SAVEPOINT, RELEASE) and buys nothing, and
    the vend's codes bookkeeping nested three of them. A database error inside still fails the
    caller's transaction, which is what the caller wants of its bookkeeping."""
    if connection.in_atomic_block:
        yield
    else:
        with transaction.atomic():
            yield


def table_analyze(model: type[models.Model]) -> None:
    """Refresh the planner's statistics of the model's table (PostgreSQL and SQLite both know
    ANALYZE). After a bulk insert the statistics still describe the table before it: a new batch's
    2,000 to 100,000 enrollments are estimated at a handful of rows, and the notices' per-chunk
    lookup by meter then scans the whole batch (20 ms a chunk of 100 instead of 0.3 ms, measured)."""
    table = connection.ops.quote_name(model._meta.db_table)
    # SKIP_LOCKED: a VACUUM of the table holds the lock ANALYZE needs; rather than wait (and, past
    # deadlock_timeout, get an ordinary autovacuum cancelled for it), skip: autovacuum's own ANALYZE
    # follows soon anyway. Runs after the caller's commit, so no database error may reach the caller.
    statement = f"ANALYZE (SKIP_LOCKED) {table}" if connection.vendor == "postgresql" else f"ANALYZE {table}"
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    except DatabaseError:
        logger.warning("ANALYZE %s failed; autovacuum's will follow", table, exc_info=True)


def sql_value(value: Any) -> Any:
    """A Python value as a raw-SQL parameter (datetimes need the backend's adaptation)."""
    if isinstance(value, dt.datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, dt.date):
        return connection.ops.adapt_datefield_value(value)
    return value


def _insert_defaults(model: type[models.Model]) -> dict[str, Any]:
    """Every column an INSERT must fill besides the primary key, with its default (Python-side
    defaults: the tables carry none of their own)."""
    found = _defaults_cache.get(model)
    if found is None:
        found = {
            str(field.column): field.get_default() for field in model._meta.concrete_fields if not field.primary_key
        }
        _defaults_cache[model] = found
    return found


_defaults_cache: dict[type[models.Model], dict[str, Any]] = {}


def upsert_increment(model: type[models.Model], keys: Mapping[str, Any], **deltas: int) -> None:
    """INSERT the row `keys` with `deltas` (other columns at their defaults), or add `deltas` to it
    if it exists, in one statement.

    `INSERT ... ON CONFLICT (keys) DO UPDATE SET col = col + excluded.col` works on PostgreSQL and
    SQLite (>= 3.24); the conflict target must be a unique constraint over exactly `keys`.
    """
    changed = tuple(name for name, value in deltas.items() if value)
    if not changed:
        return
    row = {**_insert_defaults(model), **keys, **deltas}
    sql = _upsert_sql(model, tuple(row), tuple(keys), changed)
    with connection.cursor() as cursor:
        cursor.execute(sql, [sql_value(value) for value in row.values()])


@functools.cache
def _upsert_sql(
    model: type[models.Model], columns: tuple[str, ...], keys: tuple[str, ...], changed: tuple[str, ...]
) -> str:
    table = model._meta.db_table
    updates = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in changed)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


_fields_cache: dict[type[models.Model], dict[str, Any]] = {}


def db_values(model: type[models.Model], row: Mapping[str, Any]) -> list[Any]:
    """`row`'s values (keyed by attname) as the database takes them (UUIDs, decimals, datetimes),
    prepared by the model's own fields, for raw INSERTs on the hot paths."""
    fields = _fields_cache.get(model)
    if fields is None:
        fields = _fields_cache[model] = {field.attname: field for field in model._meta.concrete_fields}
    return [fields[name].get_db_prep_save(value, connection) for name, value in row.items()]
