"""`manage.py runworkers`: `rundramatiq` under a supervisor that restarts it.

Dramatiq's own main process shuts every worker process down as soon as one of them
dies (a SIGKILL, the OOM killer, a job that crashes the interpreter), and then exits.
This command runs `manage.py rundramatiq` with the same arguments as a child and starts
it again after an unexpected exit, waiting 1 s, then 2, 4 … up to 30 s while it keeps
dying at once (the delay goes back to 1 s after a minute of life). SIGTERM or SIGINT is
passed to the child and ends the supervisor with the child's exit code, so that a
graceful stop stays graceful. Jobs lost with a dead process are recovered by the
scheduler (jobs/recovery.py); the claim sends a job that keeps killing its worker to the
dead-letter queue.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0


class Command(BaseCommand):
    help = "Run `rundramatiq` (same arguments) and restart it whenever it dies unexpectedly."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("rundramatiq_args", nargs="*", help="passed to rundramatiq (put them after --)")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after the command name goes to rundramatiq untouched.
        self.execute_child(argv[2:])

    def handle(self, *args: Any, **options: Any) -> None:
        self.execute_child(list(options["rundramatiq_args"]))

    def execute_child(self, child_args: list[str]) -> None:
        if child_args[:1] == ["--"]:
            child_args = child_args[1:]
        manage = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0].endswith("manage.py") else None
        command = [sys.executable, str(manage or "manage.py"), "rundramatiq", *child_args]
        sys.exit(supervise(command))


def worker_environment() -> dict[str, str]:
    """The workers' environment: an idle consumer polls its queue every
    BUZZER_WORKER_POLL_MS at most (Dramatiq's default, 1 s, would make a delayed job or
    a job sent to a quiet queue wait up to a second more)."""
    from django.conf import settings

    environment = os.environ.copy()
    environment.setdefault("dramatiq_worker_timeout", str(settings.BUZZER_WORKER_POLL_MS))
    return environment


def supervise(command: list[str]) -> int:
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    delay = 1.0
    while True:
        started = time.monotonic()
        # Its own session: a terminal's Ctrl-C or honcho's group signal reaches it once, through forward().
        child = subprocess.Popen(command, env=worker_environment(), start_new_session=True)
        logger.warning("runworkers: started rundramatiq (pid %d)", child.pid)
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries wait() itself
                continue
        if stopping:
            logger.warning("runworkers: rundramatiq stopped with exit code %d", code)
            return code
        lived = time.monotonic() - started
        if lived >= HEALTHY_AFTER_SECONDS:
            delay = 1.0
        logger.error("runworkers: rundramatiq exited unexpectedly (code %d); restarting in %.0f s", code, delay)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not stopping:
            time.sleep(0.1)
        if stopping:
            return 0
        delay = min(delay * 2, MAX_DELAY_SECONDS)
