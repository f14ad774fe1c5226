"""A PostgreSQL server of a test's own, on a private port, that the test may kill and
restart (Debian's server binaries under /usr/lib/postgresql/*/bin). The shared server
on 5432 is never touched. As root, the server runs as the `postgres` user (PostgreSQL
refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.redis_server import free_port


def server_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server binaries, or None when there are none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self, max_connections: int = 100, port: int | None = None) -> None:
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = bin_dir
        self.port = port or free_port()
        self.max_connections = max_connections
        # Under /tmp, not pytest's tmp_path: the `postgres` user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="buzzer-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0
        if self._as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_root else list(args)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        if not self.data_dir.exists():
            subprocess.run(
                self._command(
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ),
                check=True,
                capture_output=True,
            )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._command(
                str(self.bin / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"max_connections={self.max_connections}",
                "-c",
                "shared_buffers=64MB",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self.log()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres not ready after {timeout}s: {self.log()}")

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; its orphaned backends notice and exit."""
        os.kill(self.postmaster_pid(), signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def restart(self) -> None:
        """Start again on the same data directory and port (crash recovery replays the WAL)."""
        deadline = time.monotonic() + 30
        while self._backends_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.start()

    def _backends_alive(self) -> bool:
        """Processes of this server still running (they hold its shared memory)."""
        marker = str(self.data_dir).encode()
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if marker in cmdline.read_bytes():
                    return True
            except OSError:
                continue
        return False

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def client_connections(self, database: str) -> int:
        return self.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND backend_type = 'client backend'"  # noqa: S608 - a test's own name
        )[0][0]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.postmaster_pid(), signal.SIGINT)  # fast shutdown
            except (OSError, ValueError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
