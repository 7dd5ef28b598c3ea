"""Finding 15: one log line per request with a request id, and the same id in the log lines of the
Celery task the request enqueued (a real worker process, the real Redis broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from kplc_sts.celery import app
from tests.support import REDIS_URL, process_group_stop

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A queue of its own: other tests running in parallel start workers on the shared broker too.
QUEUE = f"sms_codes_rid_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(settings):
    if connection.vendor != "postgresql":
        pytest.skip("a worker process can only share a PostgreSQL test database")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    client.delete(QUEUE)
    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    app.conf.update(task_always_eager=False, broker_url=REDIS_URL)
    app._pool = None
    app.amqp._producer_pool = None
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = REDIS_URL
    settings.SMS_CODES_QUEUE = QUEUE
    yield client
    app.conf.update(**saved)
    app._pool = None
    app.amqp._producer_pool = None
    client.delete(QUEUE)


def _start_worker(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.base",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": REDIS_URL,
        "SMS_BACKEND": "sms.backends.memory.MemoryBackend",
        "STS_KEK": django_settings.STS_KEK,
        "KPLC_VAR_DIR": str(tmp_path),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "kplc_sts", "worker", "-Q", QUEUE, "-c", "1", "-P", "prefork",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"rid-{uuid.uuid4().hex[:8]}@%h",
            "-l", "INFO",
        ],
        cwd=django_settings.BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return process, log


def _task_lines(log: Path) -> list[dict]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "kplc_sts.task":
                lines.append(record)
    return lines


def test_the_vends_request_id_reaches_the_sms_task_in_the_worker(
    broker, tmp_path, vend, vending_keys, in_campaign, meter_factory, caplog
):
    meter = meter_factory.create()
    with caplog.at_level("INFO", logger="kplc_sts.request"):
        response = vend(meter, reference="RID-1")
    assert response.status_code == 201
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    request_lines = [r for r in caplog.records if r.name == "kplc_sts.request"]
    assert len(request_lines) == 1 and request_lines[0].request_id == request_id
    assert request_lines[0].status == 201 and request_lines[0].path == "/api/v1/vends/"

    process, log = _start_worker(tmp_path)
    try:
        deadline = time.monotonic() + 90
        while not any(r["message"].startswith("task sms.send_messages") for r in _task_lines(log)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("no task line from the worker:\n" + log.read_text()[-3000:])
            time.sleep(0.3)
    finally:
        process_group_stop(process)
        connection.close()
    task = next(r for r in _task_lines(log) if r["message"].startswith("task sms.send_messages"))
    assert task["request_id"] == request_id
