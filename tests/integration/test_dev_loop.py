"""The development loop of `make run`: honcho runs the Procfile; a code change reloads
the web process (runserver's autoreloader) and restarts the worker processes in place
(`runworkers --reload`: Dramatiq's --watch, under the supervisor, which sees no exit);
Ctrl-C leaves no process behind and the port free.

Runs on a copy of the project, so that the change touches no file of the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.support.http import request
from tests.support.waiting import wait_until
from tests.support.workers import ROOT, alive, descendants, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SKIP = (".venv", "var", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "test-results", ".env")
MESSAGE = "There is no such resource."
# Two worker groups (runworkers starts one rundramatiq each, each with its watcher), of one
# process and one thread each: the smallest topology that still has a reserved group.
GROUPS = "*:1x1,premium:1x1"
WORKER_PROCESSES = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "buzzer"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*SKIP), symlinks=True)
    return copy


@pytest.fixture
def honcho(project: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """`make run`'s last line (web and worker; the scheduler plays no part here)."""
    port = free_port()
    log = tmp_path / "honcho.log"
    env = worker_env(
        BUZZER_PORT=str(port),
        BUZZER_ENV_FILE=str(tmp_path / "no.env"),
        BUZZER_VAR_DIR=str(tmp_path / "var"),
        BUZZER_WORKER_GROUPS=GROUPS,
        LOG_FORMAT="text",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    command = [
        sys.executable, "scripts/with_env.py", str(Path(sys.executable).parent / "honcho"),
        "start", "-e", "/dev/null", "-f", "Procfile", "web", "worker",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    pids: set[int] = set()
    try:
        yield process, port, log
    finally:
        pids |= set(descendants(process.pid))
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def not_found_message(port: int) -> str | None:
    try:
        status, _, body = request(f"http://127.0.0.1:{port}/api/nope", timeout=5)
    except OSError:
        return None
    return body["error"]["message"] if status == 404 and isinstance(body, dict) else None


def worker_beats(root: int) -> int:
    """How many worker processes under `root` have started and beat (the tracked workers'
    set names their pids): only then does Dramatiq's watcher restart them cleanly on a change."""
    mine = set(descendants(root))
    entries = redis.Redis.from_url(settings.REDIS_URL).zrange(f"{settings.BUZZER_NAMESPACE}:buzzer:workers", 0, -1)
    return sum(1 for entry in entries if int(entry.decode().rsplit("|", 1)[1]) in mine)


def test_code_changes_reload_web_and_workers_and_ctrl_c_leaves_nothing(project: Path, honcho):
    process, port, log = honcho
    wait_until(lambda: not_found_message(port) == MESSAGE, timeout=120, what="runserver to answer")
    wait_until(
        lambda: log.read_text().count("is booting up") >= WORKER_PROCESSES, timeout=120, what="the workers to boot"
    )
    # The watcher thread starts after the worker processes: give it its moment.
    wait_until(lambda: len(descendants(process.pid)) >= 6, timeout=60, what="all processes to start")
    wait_until(lambda: worker_beats(process.pid) >= WORKER_PROCESSES, timeout=120, what="every worker process to beat")

    api = project / "orders" / "api.py"
    api.write_text(api.read_text().replace(MESSAGE, "There is no such resource (reloaded)."))

    wait_until(
        lambda: not_found_message(port) == "There is no such resource (reloaded).",
        timeout=120,
        what="runserver to reload the changed code",
    )
    try:
        wait_until(
            lambda: log.read_text().count("is booting up") >= 2 * WORKER_PROCESSES,
            timeout=120,
            what="the workers of every group to restart",
        )
    except AssertionError as timed_out:  # what the processes said, for the one who reads the failure
        raise AssertionError(f"{timed_out}; honcho's log:\n{log.read_text()[-20_000:]}") from None
    output = log.read_text()
    assert "exited unexpectedly" not in output, output
    assert "Killing worker process" not in output, output  # one save, two file events: still a graceful restart
    assert "web stopped" not in output and "worker stopped" not in output, output

    processes = [process.pid, *descendants(process.pid)]
    process.send_signal(signal.SIGINT)  # Ctrl-C reaches honcho; honcho stops each process group
    process.wait(timeout=60)
    wait_until(lambda: not [pid for pid in processes if alive(pid)], timeout=30, what="every process to stop")
    with socket.socket() as sock:
        # Free for the next `make run` (a server sets SO_REUSEADDR too: closed connections may linger).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
