"""A real gunicorn under production settings against the PostgreSQL test database: the closest this
machine gets to a deployment. Its whole output (gunicorn, Django, access lines) goes to one file,
which the log tests grep. PostgreSQL only: the server process must share the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.security.production_env import _SCRUB, PRODUCTION_ENV, PROJECT_DIR
from tests.support import REDIS_URL, process_group_stop


@dataclass
class LiveServer:
    url: str
    log: Path
    env: dict[str, str]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_gunicorn(tmp_path: Path, **extra_env: str) -> Iterator[LiveServer]:
    db = connection.settings_dict
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(PRODUCTION_ENV)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        STS_KEK=settings.STS_KEK,  # the test process wrapped the vending keys under its own KEK
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",  # plain HTTP on loopback; TLS is the proxy's job
        CELERY_BROKER_URL=REDIS_URL,  # publish SMS tasks; no worker runs, nothing leaves the machine
        CACHE_URL=REDIS_URL,
        KPLC_VAR_DIR=str(tmp_path),
        LOG_LEVEL="INFO",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    (tmp_path / "metrics").mkdir(exist_ok=True)
    env.update(extra_env)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "kplc_sts.wsgi", "-c", "kplc_sts/gunicorn_conf.py",
                "--bind", f"127.0.0.1:{port}", "--workers", "2", "--access-logfile", "-",
            ],
            cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = LiveServer(url=f"http://127.0.0.1:{port}", log=log, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{server.log_text()}")
            try:
                if server.request("GET", "/healthz")[0] in (200, 503):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{server.log_text()}")
            time.sleep(0.2)
        yield server
    finally:
        process_group_stop(process)
