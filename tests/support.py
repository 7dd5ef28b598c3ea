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


def _group_members_alive(pgid: int) -> bool:
    """Whether any process of the group is still running. A zombie does not count: it holds no
    connection, and in a container whose init does not reap, it would never leave."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: ask the kernel about the group as a whole
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ")".
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def process_group_wait_gone(pgid: int, timeout: float = 10) -> None:
    """Wait until no process of the group runs, SIGKILLing what is left after `timeout`."""
    deadline = time.monotonic() + timeout
    killed = False
    while _group_members_alive(pgid):
        if time.monotonic() > deadline:
            if killed:
                raise AssertionError(f"process group {pgid} still running after SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + timeout
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
