"""The real stack of a rehearsal, as separate processes: Redis (when the rehearsal owns it), the
local Africa's Talking gateway, gunicorn (partner API, USSD, delivery reports, dashboard), Celery
workers and beat. Every process gets the same clock parameters in its environment, so they all
run the one accelerated clock without talking to each other.

Faults act on these processes the way an outage would: a worker's whole process group is
SIGKILLed (no warm shutdown, mid-send) and started again; Redis is shut down without saving (its
queues, unacknowledged tasks and cache are lost) and started again on the same port.

The stack supervises its processes as the deployment does (docker-compose `restart:
unless-stopped`): one that exits on its own is started again and the exit is recorded with its
status and the end of its log. A process that keeps dying (more than MAX_RESTARTS) is left down,
and counts as died. Celery/kombu has a known race when the broker vanishes: a task finishing at
that moment acks on a channel whose connection was just closed, and the worker exits with
"Unrecoverable error: AttributeError ... 'hostname'". Production survives it by its restart
policy; the rehearsal must too, and says when it happened.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings

from . import endpoints

PYTHON = sys.executable
QUEUES = "sms_codes,sms_notices,celery"
MAX_RESTARTS = 3  # per process: past this it is crash-looping, not recovering
WATCH_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StackError(RuntimeError):
    pass


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    held: bool = False  # down on purpose (a fault), not to be restarted by the supervisor
    restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class StackConfig:
    out: Path
    database_url: str
    clock_env: dict[str, str]
    web_workers: int = 2
    web_threads: int = 4
    celery_workers: int = 2
    fail_rate: float = 0.0
    numbers_file: Path | None = None
    dlr_delay_clock_seconds: float = 5.0
    redis_url: str | None = None  # None: start a redis-server of our own (needed to restart it)
    seed: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    """Start, watch, hurt and stop the processes. Use as a context manager: everything started is
    stopped, whatever happens."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.logs = config.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.web_port = free_port()
        self.gateway_port = free_port()
        self.redis_port: int | None = None
        self.redis_process: Process | None = None
        self.processes: dict[str, Process] = {}
        self.dlr_secret = settings.SMS_DELIVERY_REPORT_SECRET
        # The callback is protected as in production: the simulated customers dial through AT's path.
        self.ussd_secret = secrets.token_urlsafe(16)
        self.gateway_api_key = "rehearsal-gateway-key"
        if config.redis_url is None:
            self.redis_port = free_port()
            base = f"redis://127.0.0.1:{self.redis_port}"
            self.broker_url, self.cache_url = f"{base}/0", f"{base}/1"
        else:
            self.broker_url = self.cache_url = config.redis_url
        self.events: list[dict[str, object]] = []
        # Exits the supervisor saw (and restarted, up to MAX_RESTARTS each).
        self.exits: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- environment -----------------------------------------------------------------------------

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            # base: DEBUG off, no demo shortcuts; production's settings refuse an accelerated clock.
            "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.base",
            "DATABASE_URL": self.config.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CACHE_URL": self.cache_url,
            "SMS_RATE_REDIS_URL": self.cache_url,
            "SMS_BACKEND": "sms.backends.africastalking.AfricasTalkingBackend",
            "AT_API_URL": self.gateway_url,
            "AT_API_KEY": self.gateway_api_key,
            "AT_USERNAME": "kplc",
            "SMS_DELIVERY_REPORT_SECRET": self.dlr_secret,
            "USSD_CALLBACK_SECRET": self.ussd_secret,
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # token digests are keyed from it: one for all
            "STS_KEK": settings.STS_KEK or "",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "KPLC_VAR_DIR": str(self.config.out / "var"),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # Partners and the gateway are ours: no throttling of the simulated load itself.
            "PARTNER_DEFAULT_THROTTLE_RATE": "10000000/min",
            "SMS_SEND_RATE": "2000",
            # Wall seconds (see kplc_sts.clock): the local gateway reports within a second, so a send
            # stuck this long lost its worker.
            "SMS_SENDING_STALE_SECONDS": "8",
            "SMS_DLR_GRACE_SECONDS": "15",
            "SMS_MAX_ATTEMPTS": "10",
            # Beat at most every 2 wall seconds: the sweep and the target recount are not free.
            "CLOCK_BEAT_MIN_SECONDS": "2",
            **self.config.clock_env,
            **self.config.extra_env,
        }
        return env

    # --- processes -----------------------------------------------------------------------------------

    def _spawn(self, process: Process) -> Process:
        handle = process.log.open("ab")
        process.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            process.argv,
            cwd=settings.BASE_DIR,
            env=self.env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a kill takes its children too
        )
        handle.close()
        process.starts += 1
        return process

    def _process(self, name: str, argv: list[str]) -> Process:
        process = Process(name=name, argv=argv, log=self.logs / f"{name}.log")
        self.processes[name] = process
        return self._spawn(process)

    def start(self) -> None:
        if self.redis_port is not None:
            self._redis_start()
        else:
            self._redis_clear()
        callback = f"{self.web_url}{endpoints.DELIVERY_REPORTS.format(secret=self.dlr_secret)}"
        gateway = [
            PYTHON, "manage.py", "fake_africastalking", "--port", str(self.gateway_port), "--callback", callback,
            "--fail-rate", str(self.config.fail_rate), "--dlr-delay", str(self.config.dlr_delay_clock_seconds),
            "--api-key", self.gateway_api_key, "--seed", str(self.config.seed), "--dlr-threads", "4",
        ]  # fmt: skip
        if self.config.numbers_file is not None:
            gateway += ["--numbers-file", str(self.config.numbers_file)]
        self._process("gateway", gateway)
        self._process(
            "web",
            [
                PYTHON, "-m", "gunicorn", "kplc_sts.wsgi:application", "--bind", f"127.0.0.1:{self.web_port}",
                "--workers", str(self.config.web_workers), "--worker-class", "gthread",
                "--threads", str(self.config.web_threads), "--keep-alive", "30", "--timeout", "60",
                "--log-level", "warning",
            ],
        )  # fmt: skip
        for index in range(self.config.celery_workers):
            self._process(f"worker-{index}", self._worker_argv(index))
        self._process(
            "beat",
            [
                PYTHON, "-m", "celery", "-A", "kplc_sts", "beat", "-l", "WARNING",
                "-s", str(self.config.out / "var" / "celerybeat-schedule"),
            ],
        )  # fmt: skip

    def _worker_argv(self, index: int) -> list[str]:
        return [
            PYTHON, "-m", "celery", "-A", "kplc_sts", "worker", "-Q", QUEUES, "-c", "1", "-P", "prefork",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"rehearsal-{index}@%h", "-l", "INFO",
        ]  # fmt: skip

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.processes)
        while pending:
            for name in sorted(pending):
                process = self.processes[name]
                if not process.alive:
                    raise StackError(f"{name} exited at start:\n{self._tail(process)}")
                if self._ready(process):
                    pending.discard(name)
            if time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}")
            time.sleep(0.2)

    def _ready(self, process: Process) -> bool:
        if process.name == "web":
            return self._http_ok(self.web_port, endpoints.HEALTH)
        if process.name == "gateway":
            return self._http_ok(self.gateway_port, endpoints.GATEWAY_STATS)
        if process.name.startswith("worker"):
            return "ready." in process.log.read_text(errors="replace")
        return True  # beat has no readiness signal; it reports its own failures in its log

    @staticmethod
    def _http_ok(port: int, path: str) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    @staticmethod
    def _tail(process: Process, size: int = 3000) -> str:
        return process.log.read_text(errors="replace")[-size:]

    def supervise(self) -> None:
        """Restart, from a thread, whatever exits on its own from now until stop()."""
        self._watching.set()
        self._watcher = threading.Thread(target=self._watch, name="rehearsal-supervisor", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self._watching.is_set():
            with self._lock:
                for process in self.processes.values():
                    if process.alive or process.held or process.restarts >= MAX_RESTARTS:
                        continue
                    assert process.popen is not None
                    self.exits.append(
                        {
                            "process": process.name,
                            "exit_status": process.popen.returncode,
                            "wall": time.time(),
                            "log_tail": self._tail(process),
                        }
                    )
                    process.restarts += 1
                    self._spawn(process)
            time.sleep(WATCH_SECONDS)

    def check_alive(self) -> dict[str, dict[str, object]]:
        """The processes that are down at the end (died on their own more often than the supervisor
        restarts, or died with no supervisor), each with its exit status and the end of its log."""
        with self._lock:
            return {
                name: {
                    "exit_status": process.popen.returncode if process.popen else None,
                    "restarts": process.restarts,
                    "log_tail": self._tail(process),
                }
                for name, process in self.processes.items()
                if not process.alive
            }

    def stop(self) -> None:
        self._watching.clear()
        if self._watcher is not None:
            self._watcher.join()
        for process in reversed(list(self.processes.values())):
            self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            self._wait(process, deadline)
        if self.redis_process is not None:
            self._signal(self.redis_process, signal.SIGTERM)
            self._wait(self.redis_process, time.monotonic() + 10)

    @staticmethod
    def _signal(process: Process, sig: int) -> None:
        if process.popen is not None and process.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, sig)

    def _wait(self, process: Process, deadline: float) -> None:
        if process.popen is None:
            return
        try:
            process.popen.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self._signal(process, signal.SIGKILL)
            process.popen.wait()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Redis -----------------------------------------------------------------------------------------

    def _redis_start(self) -> None:
        assert self.redis_port is not None
        if self.redis_process is None:
            self.redis_process = Process(
                name="redis",
                argv=[
                    "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--daemonize", "no",
                ],
                log=self.logs / "redis.log",
            )  # fmt: skip
        self._spawn(self.redis_process)
        deadline = time.monotonic() + 20
        client = redis.Redis.from_url(self.broker_url, socket_timeout=1)
        while True:
            try:
                client.ping()
                return
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"redis-server did not start: {exc}") from exc
                time.sleep(0.1)

    def _redis_clear(self) -> None:
        """A Redis we do not own: drop what an earlier rehearsal left (queued tasks naming rows of a
        database that no longer exists, rate windows named by the same clock instants), nothing else."""
        client = redis.Redis.from_url(self.broker_url)
        for queue in QUEUES.split(","):
            client.delete(queue)
        client.delete("unacked", "unacked_index")
        for pattern in (":1:*", "ussd:*", "partner-throttle:*", "sms:rate*"):
            for key in client.scan_iter(pattern, count=1000):
                client.delete(key)

    # --- faults ------------------------------------------------------------------------------------------

    def kill_worker(self, index: int = 0) -> None:
        process = self.processes[f"worker-{index}"]
        with self._lock:
            process.held = True
            self._signal(process, signal.SIGKILL)
            if process.popen is not None:
                process.popen.wait()
        self.events.append({"fault": "worker_killed", "worker": index, "wall": time.time()})

    def restart_worker(self, index: int = 0) -> None:
        process = self.processes[f"worker-{index}"]
        with self._lock:
            self._spawn(process)
            process.held = False
        self.events.append({"fault": "worker_restarted", "worker": index, "wall": time.time()})

    def restart_redis(self, down_seconds: float = 3.0) -> None:
        if self.redis_process is None:
            raise StackError("only a Redis the rehearsal started can be restarted (run without a shared broker)")
        self._signal(self.redis_process, signal.SIGKILL)  # SHUTDOWN NOSAVE: everything in it is lost
        if self.redis_process.popen is not None:
            self.redis_process.popen.wait()
        self.events.append({"fault": "redis_down", "wall": time.time()})
        time.sleep(down_seconds)
        self._redis_start()
        self.events.append({"fault": "redis_up", "wall": time.time()})

    # --- what the processes cost ---------------------------------------------------------------------------

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) each process group has used so far, children included
        (live ones counted from /proc; gunicorn's and Celery's workers are children)."""
        groups = {
            process.popen.pid: process.name
            for process in [*self.processes.values(), *([self.redis_process] if self.redis_process else [])]
            if process.popen is not None
        }
        used: dict[str, float] = dict.fromkeys(groups.values(), 0.0)
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = groups.get(int(fields[2]))  # the process group id
            if name is not None:
                used[name] += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
        return used

    def log_lines(self, name: str, needle: str) -> Iterator[str]:
        process = self.processes.get(name)
        if process is None:
            return iter(())
        return (line for line in process.log.read_text(errors="replace").splitlines() if needle in line)
