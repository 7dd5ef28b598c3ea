"""Helpers the integration tests share: what they need to run, and stopping the processes they start."""

from __future__ import annotations

import os
import signal
import subprocess

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
    """SIGTERM the process's group (it was started with start_new_session), SIGKILL if it lingers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
