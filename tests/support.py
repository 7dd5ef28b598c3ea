"""Helpers the integration tests share: what they need to run, and stopping the processes they start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
import redis
from django.db import connection

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def needs_postgres_and_redis(reason: str) -> None:
    """Skip the calling test (saying why) unless it runs on PostgreSQL with Redis reachable."""
    if connection.vendor != "postgresql":
        pytest.skip(reason)
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")


def process_group_stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 20) -> None:
    """SIGTERM the process's group (it was started with start_new_session), SIGKILL if it lingers,
    and return only when no process of the group is left (a prefork child can outlive its parent)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    process_group_wait_gone(process.pid)


def process_group_wait_gone(pgid: int, timeout: float = 10) -> None:
    """Wait until the group is empty, SIGKILLing whatever is still in it after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def database_others_end(timeout: float = 20) -> None:
    """End every other client session on the test database and wait until they are gone.

    A backend outlives its process while PostgreSQL finishes a statement for it, and a test
    database's flush (TRUNCATE of every table) deadlocks with one still writing; call this
    after the processes that could open new sessions (workers, gateways) have stopped."""
    if connection.vendor != "postgresql":
        return
    others = (
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'"
    )
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute(f"SELECT count(pg_terminate_backend(pid)) {others}")
            (left,) = cursor.fetchone()
            if not left:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{left} database sessions still open after {timeout:.0f} s")
            time.sleep(0.1)
    connection.close()
