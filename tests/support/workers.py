"""Real `manage.py rundramatiq` processes against the suite's Redis and database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the test database (pytest-django's, not the one `make run` uses)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BUZZER_TESTING": "0",
            "BUZZER_BROKER": "redis",
            "DEBUG": "1",
            "REDIS_URL": settings.REDIS_URL,
            "REDIS_SENTINELS": "",  # never sentinels from .env: a test passes its own
            "REDIS_SENTINEL_MASTER": "",
            "REDIS_PASSWORD": "",
            "BUZZER_NAMESPACE": settings.BUZZER_NAMESPACE,
            "DATABASE_URL": database_url(),
            "EMAIL_BACKEND": "tests.support.email.RedisLedgerBackend",
            "dramatiq_worker_timeout": "100",
            "BUZZER_WEBHOOKS_ALLOW_PRIVATE": "1",  # the tests' receivers listen on loopback
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Is the process running (not gone, not a zombie waiting to be reaped)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    result: list[int] = []
    for child in child_pids(pid):
        result += [child, *descendants(child)]
    return result


class WorkerProcess:
    """`manage.py rundramatiq`, or `manage.py runworkers` (the same under a supervisor
    that restarts it) with `supervised=True`, or `python -m dramatiq <module>` (the
    benchmark's worker module, with its no-op actor) with `module=`; or, with `groups=`
    ("*:1x2,premium:1x1"), `manage.py runworkers --groups …`: one supervised rundramatiq
    per worker group, as `make run` starts them."""

    def __init__(
        self,
        processes: int = 2,
        threads: int = 4,
        log: Path | None = None,
        wait_ready: bool = True,
        supervised: bool = False,
        redis_url: str | None = None,
        module: str | None = None,
        namespace: str | None = None,
        groups: str | None = None,
        queues: list[str] | None = None,
        **env: str,
    ) -> None:
        """`queues`: consume only these (rundramatiq's --queues); all by default."""
        if groups is not None:
            from jobs import topology

            processes = sum(group.processes for group in topology.parse(groups))
        self.processes = processes
        self.namespace = namespace or settings.BUZZER_NAMESPACE
        self.tracked = env.get("BUZZER_JOB_TRACKING", "1") != "0"  # tracked workers beat with their pid
        self.redis_url = redis_url or settings.REDIS_URL
        if redis_url:
            env.setdefault("REDIS_URL", redis_url)
        self.log_path = log or ROOT / "var" / f"test-worker-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        started_ms = time.time() * 1000
        sizes = ["--processes", str(processes), "--threads", str(threads)]
        if module:
            program = ["-m", "dramatiq", module]
            env.setdefault("PYTHONPATH", str(ROOT))
        elif groups is not None:
            program, sizes = ["manage.py", "runworkers"], ["--groups", groups]
        else:
            program = ["manage.py", "runworkers" if supervised else "rundramatiq"]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *program,
                *sizes,
                "--worker-shutdown-timeout",
                "10000",
                *(["--queues", *queues] if queues and groups is None else []),
            ],
            cwd=ROOT,
            env=worker_env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait_ready:  # not for a worker that may die at once (a poison message waits for it)
            self._wait_ready(started_ms)

    def _wait_ready(self, started_ms: float, timeout: float = 60) -> None:
        """Ready once every worker process of this command beats. Dramatiq's own heartbeat
        set also holds processes that only send (a scheduler, a web process), so a beat
        there can come before this command has forked its workers; the tracked workers'
        set (`<namespace>:buzzer:workers`, "<broker id>|<host>|<pid>") names the pid."""
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.output()}")
            if self.tracked:
                mine = set(descendants(self.proc.pid))
                entries = client.zrangebyscore(f"{self.namespace}:buzzer:workers", started_ms, "+inf")
                beating = [e for e in entries if int(e.decode().rsplit("|", 1)[1]) in mine]
                if len(beating) >= self.processes:
                    return
            elif len(client.zrangebyscore(f"{self.namespace}:__heartbeats__", started_ms, "+inf")) >= self.processes:
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s: {self.output()}")

    def worker_pids(self) -> list[int]:
        """The processes that run jobs: the leaves under rundramatiq (and its supervisor)."""
        return [pid for pid in descendants(self.proc.pid) if not child_pids(pid)]

    def group_pids(self, group: str) -> list[int]:
        """The processes that run the jobs of one worker group ("premium", "default"),
        under the rundramatiq that runworkers last started for it (it logs each start)."""
        # "default" is also the group "*" makes of default and the queues no group names
        # ("default+webhooks").
        pattern = rf"started rundramatiq \(group {re.escape(group)}(?:\+[^,]*)?, pid (\d+)\)"
        started = re.findall(pattern, self.output_all())
        assert started, f"runworkers started no group {group!r}: {self.output()}"
        root = int(started[-1])
        return [pid for pid in descendants(root) if not child_pids(pid)]

    def output(self) -> str:
        return self.output_all()[-5000:]

    def output_all(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextmanager
def scheduler_process(log: Path | None = None, **env: str) -> Iterator[subprocess.Popen]:
    """A real `manage.py runscheduler` against the suite's Redis and database."""
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runscheduler"],
        cwd=ROOT,
        env=worker_env(**env),
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)
