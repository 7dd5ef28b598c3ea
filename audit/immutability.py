"""The audit log is append-only in the database itself, not only in the admin.

PostgreSQL: a BEFORE UPDATE OR DELETE trigger raises. SQLite (the demo): two BEFORE triggers call
RAISE(ABORT) unless the connection-level function `kplc_audit_unlocked()` says otherwise; Django
registers that function on every SQLite connection it opens, returning 0, so any UPDATE or DELETE
is refused (and a connection Django did not open, such as the sqlite3 shell, fails on the unknown
function: refused too). The one sanctioned bulk delete is the test database's flush on SQLite
(`audit_maintenance()`; PostgreSQL flushes with TRUNCATE, which row triggers do not see).

On PostgreSQL the trigger guards against the application and anyone using its role; the table's
owner could still drop the trigger or TRUNCATE. docs/security.md says what the deployment should add:
REVOKE UPDATE, DELETE, TRUNCATE on the table from the role the application runs as.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

TABLE = "audit_auditevent"
MESSAGE = "audit log is append-only: audit events cannot be changed or deleted"

POSTGRESQL_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    f"DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE}",
    f"""
    CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
    """,
]
POSTGRESQL_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE}",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
]
SQLITE_INSTALL = [
    "DROP TRIGGER IF EXISTS audit_event_no_update",
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
    f"""
    CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON {TABLE}
    WHEN kplc_audit_unlocked() = 0
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON {TABLE}
    WHEN kplc_audit_unlocked() = 0
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
]
SQLITE_REMOVE = ["DROP TRIGGER IF EXISTS audit_event_no_update", "DROP TRIGGER IF EXISTS audit_event_no_delete"]

_maintenance = threading.local()


def _unlocked() -> int:
    return 1 if getattr(_maintenance, "on", False) else 0


def register_sqlite_function(sender: Any, connection: Any, **_kwargs: Any) -> None:
    """connection_created: the function the SQLite triggers consult."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("kplc_audit_unlocked", 0, _unlocked)


@contextlib.contextmanager
def audit_maintenance() -> Iterator[None]:
    """Let this thread's SQLite connection delete audit rows (the test database's flush only)."""
    previous = getattr(_maintenance, "on", False)
    _maintenance.on = True
    try:
        yield
    finally:
        _maintenance.on = previous


def install(schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": POSTGRESQL_INSTALL, "sqlite": SQLITE_INSTALL}.get(vendor, [])
    if vendor == "sqlite":
        register_sqlite_function(None, schema_editor.connection)
    for statement in statements:
        schema_editor.execute(statement)


def remove(schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    for statement in {"postgresql": POSTGRESQL_REMOVE, "sqlite": SQLITE_REMOVE}.get(vendor, []):
        schema_editor.execute(statement)
