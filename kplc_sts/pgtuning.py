"""Per-table storage parameters of the hot tables on PostgreSQL (autovacuum, fillfactor).

The server-wide settings are deploy/postgres/postgresql.conf; these are the tables whose size or
churn the defaults (vacuum after 20 % of a table changed) do not fit. docs/postgres.md gives the
reasoning and the figures. Applied by one migration per owning app (`storage_apply`), undone by
its reverse (`storage_reset`); SQLite has no such thing and is left alone.

A table that has become partitioned (the history tables may be) takes the parameters on each leaf
partition: PostgreSQL refuses storage parameters on the partitioned parent. Whoever creates a new
partition of one of these tables applies them to it with `partition_storage_sql`.
"""

from __future__ import annotations

from typing import Any

# History, append-mostly, 1-2 M rows a day each and kept for years. Vacuum by inserts every 100,000
# rows (not after 20 % growth: at 500 M rows that is 100 M rows, days of work at once) so that the
# visibility map and freezing keep pace with the new pages while they are still cached, and analyze
# often enough that "the last hour" is in the statistics.
HISTORY: dict[str, Any] = {
    "autovacuum_vacuum_insert_threshold": 100_000,
    "autovacuum_vacuum_insert_scale_factor": 0,
    "autovacuum_vacuum_threshold": 10_000,
    "autovacuum_vacuum_scale_factor": 0.01,
    "autovacuum_analyze_threshold": 10_000,
    "autovacuum_analyze_scale_factor": 0.005,
}

# The SMS outbox: every message is updated about four times, so dead rows pile up at four times the
# send rate; vacuum after a fixed number of them, at full speed, so the queue's pages stay few and
# inserts reuse the space of the rows the log mover deleted. Its status updates touch no indexed
# column, so with room on the page they are HOT (no new index entries). Fillfactor 50, not 70-80:
# a worker claims 100 consecutive ids in one transaction, so every row of a page needs its new
# version on that page at once (bench/outbox_bench.py: HOT ratio 0.50 at 70, 0.68 at 50).
QUEUE: dict[str, Any] = {
    "fillfactor": 50,
    "autovacuum_vacuum_threshold": 5_000,
    "autovacuum_vacuum_scale_factor": 0,
    "autovacuum_vacuum_insert_threshold": 20_000,
    "autovacuum_vacuum_insert_scale_factor": 0,
    "autovacuum_analyze_threshold": 5_000,
    "autovacuum_analyze_scale_factor": 0.02,
    "autovacuum_vacuum_cost_delay": 0,
}

# Counter rows that every vend (or every SMS state change) updates in place: half-empty pages so the
# update finds room on its own page (a HOT update: no index entry, no page split), and vacuum after a
# few hundred dead versions.
COUNTER: dict[str, Any] = {
    "fillfactor": 50,
    "autovacuum_vacuum_threshold": 500,
    "autovacuum_vacuum_scale_factor": 0,
    "autovacuum_analyze_threshold": 500,
    "autovacuum_analyze_scale_factor": 0.05,
    "autovacuum_vacuum_cost_delay": 0,
}

HOT_TABLES: dict[str, dict[str, Any]] = {
    "tokens_vend": HISTORY,
    "tokens_issuedtoken": HISTORY,
    "care_tokendigest": HISTORY,
    "sms_message": QUEUE,
    "sms_messagelog": HISTORY,
    "dashboard_vendminutestat": COUNTER,
    "partners_partnerdailytotal": COUNTER,
    "sms_messagetally": COUNTER,
}


def _leaves(cursor: Any, table: str) -> list[str]:
    """The table itself, or the leaf partitions of a partitioned one ([] if it does not exist)."""
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
    row = cursor.fetchone()
    if row is None or row[0] not in ("r", "p"):
        return []
    if row[0] == "r":
        return [table]
    cursor.execute(
        "SELECT c.relname FROM pg_partition_tree(to_regclass(%s)) t JOIN pg_class c ON c.oid = t.relid"
        " WHERE t.isleaf AND c.relkind = 'r' ORDER BY c.relname",
        [table],
    )
    return [leaf for (leaf,) in cursor.fetchall()]


def partition_storage_sql(parent: str, partition: str, quote: Any = lambda name: f'"{name}"') -> str | None:
    """The ALTER TABLE giving a new partition of `parent` its hot-table parameters (None: not hot)."""
    params = HOT_TABLES.get(parent)
    if not params:
        return None
    listed = ", ".join(f"{key} = {value}" for key, value in params.items())
    return f"ALTER TABLE {quote(partition)} SET ({listed})"


def storage_apply(schema_editor: Any, tables: list[str]) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in tables:
            for leaf in _leaves(cursor, table):
                sql = partition_storage_sql(table, leaf, schema_editor.quote_name)
                if sql:
                    cursor.execute(sql)


def storage_reset(schema_editor: Any, tables: list[str]) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in tables:
            keys = ", ".join(HOT_TABLES[table])
            for leaf in _leaves(cursor, table):
                cursor.execute(f"ALTER TABLE {schema_editor.quote_name(leaf)} RESET ({keys})")
