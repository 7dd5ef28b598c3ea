"""Throwaway PostgreSQL clusters on free ports: a primary made with initdb and streaming replicas
made from it with pg_basebackup (the replica test, bench/pg_tuning.py).

Self-contained on purpose: the cluster's own pg_hba.conf (trust on 127.0.0.1, replication
included) rather than the machine's. initdb and postgres refuse to run as root, so as root (CI)
every server command runs as the `postgres` system user through runuser; the data directory
lives in a fresh directory under /tmp owned by that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg2


def pg_bindir() -> Path:
    """The PostgreSQL server binaries: PG_BINDIR, pg_config's answer, or Debian's 15."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
        if (found / "initdb").exists():
            return found
    return Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Cluster:
    """One PostgreSQL server in its own directory. `settings` go to postgresql.conf (appended, so
    they win over initdb's); `include` names a whole configuration file to include first."""

    def __init__(self, name: str, root: Path, port: int | None = None) -> None:
        self.name, self.root = name, root
        self.data = root / name
        self.port = port or free_port()
        self.log = root / f"{name}.log"
        self.bindir = pg_bindir()

    # --- running commands as the server's user -----------------------------------------------------

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_as_server_user(), *args], capture_output=True, text=True, check=check, cwd=self.root, timeout=300
        )

    def bin(self, name: str) -> str:
        return str(self.bindir / name)

    # --- life cycle ----------------------------------------------------------------------------------

    def initdb(self, settings: Mapping[str, str] | None = None, include: Path | None = None) -> Cluster:
        self.run(self.bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        lines = []
        if include is not None:
            lines.append(f"include '{include}'")
        lines += [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
        ]
        lines += [f"{key} = {value}" for key, value in (settings or {}).items()]
        self.append_conf(lines)
        return self

    def basebackup_from(self, primary: Cluster, settings: Mapping[str, str] | None = None) -> Cluster:
        """A streaming replica of `primary`: pg_basebackup -R writes standby.signal and primary_conninfo."""
        self.run(
            self.bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        self.append_conf([f"port = {self.port}", *[f"{k} = {v}" for k, v in (settings or {}).items()]])
        return self

    def append_conf(self, lines: list[str]) -> None:
        conf = self.data / "postgresql.conf"
        # The file belongs to the server's user; appending as root keeps its owner.
        with conf.open("a") as handle:
            handle.write("\n# --- tests/pgcluster.py ---\n" + "\n".join(lines) + "\n")

    def start(self) -> Cluster:
        self.run(self.bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self.run(self.bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return self.run(self.bin("pg_ctl"), "-D", str(self.data), "status", check=False).returncode == 0

    # --- talking to it --------------------------------------------------------------------------------

    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres") -> psycopg2.extensions.connection:
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db, connect_timeout=5)
        conn.autocommit = True
        return conn

    def query(self, sql: str, params: tuple[object, ...] = (), db: str = "postgres") -> list[tuple[object, ...]]:
        conn = self.connect(db)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def cluster_root(prefix: str = "kplc-pg-") -> Path:
    """A fresh directory the server's user owns (root's pytest tmp_path is closed to it)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o755)
    return root


def wait_until(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
