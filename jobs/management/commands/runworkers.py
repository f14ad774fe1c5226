"""`manage.py runworkers`: the worker groups, each a `rundramatiq` under a supervisor that
restarts it.

Without `--processes`, `--threads` or `--queues` it starts one `manage.py rundramatiq`
per group of `BUZZER_WORKER_GROUPS` (or `--groups "*:2x4,premium:1x2,reports:1x2"`), each
consuming only its group's queues (jobs/topology.py): premium jobs and reports have
threads that standard work never takes. Other arguments (`--reload`,
`--worker-shutdown-timeout`, `-v`) go to every group. With `--processes`, `--threads` or
`--queues` it runs one `rundramatiq` with exactly the arguments given, as before groups
existed (without `--queues` that pool consumes every queue).

Dramatiq's own main process shuts every worker process down as soon as one of them dies
(a SIGKILL, the OOM killer, a job that crashes the interpreter), and then exits. The
supervisor starts a group's `rundramatiq` again after an unexpected exit, waiting 1 s,
then 2, 4 … up to 30 s while it keeps dying at once (the delay goes back to 1 s after a
minute of life); the other groups go on meanwhile. SIGTERM or SIGINT is passed to every
group and ends the supervisor once all have stopped, with the first non-zero exit code
among them (0 when all stopped cleanly), so that a graceful stop stays graceful. Jobs
lost with a dead process are recovered by the scheduler (jobs/recovery.py); the claim
sends a job that keeps killing its worker to the dead-letter queue.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs import topology

logger = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0
POLL_SECONDS = 0.1
# Arguments that size or aim one pool: given any, runworkers runs that single pool.
SINGLE_POOL_OPTIONS = ("--processes", "-p", "--threads", "-t", "--queues", "-Q")


class Command(BaseCommand):
    help = "Run one `rundramatiq` per worker group (BUZZER_WORKER_GROUPS) and restart any that dies unexpectedly."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("rundramatiq_args", nargs="*", help="passed to rundramatiq (put them after --)")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after the command name goes to rundramatiq, but --groups.
        try:
            self.execute_child(argv[2:])
        except CommandError as exc:
            self.stderr.write(f"runworkers: {exc}")
            sys.exit(1)

    def handle(self, *args: Any, **options: Any) -> None:
        self.execute_child(list(options["rundramatiq_args"]))

    def execute_child(self, child_args: list[str]) -> None:
        if child_args[:1] == ["--"]:
            child_args = child_args[1:]
        spec, common = split_groups_option(child_args)
        manage = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0].endswith("manage.py") else None
        base = [sys.executable, str(manage or "manage.py"), "rundramatiq"]
        if is_single_pool(common):
            if spec is not None:
                raise CommandError("--groups cannot be combined with --processes, --threads or --queues")
            sys.exit(supervise_all([Child("pool", [*base, *common])]))
        try:
            groups = worker_groups(spec)
        except topology.TopologyError as exc:
            raise CommandError(f"{exc} (BUZZER_WORKER_GROUPS or --groups)") from exc
        children = [
            Child(group.name, [*base, *group_arguments(group), *common, "--queues", *group.queues]) for group in groups
        ]
        for group in groups:
            logger.warning(
                "runworkers: group %s: %d process(es) x %d thread(s)", group.name, group.processes, group.threads
            )
        sys.exit(supervise_all(children))


def split_groups_option(args: list[str]) -> tuple[str | None, list[str]]:
    """(--groups' value or None, the other arguments)."""
    spec, rest = None, []
    items = iter(args)
    for arg in items:
        if arg == "--groups":
            spec = next(items, None)
            if spec is None:
                raise CommandError("--groups needs a value, e.g. --groups '*:2x4,premium:1x2,reports:1x2'")
        elif arg.startswith("--groups="):
            spec = arg.removeprefix("--groups=")
        else:
            rest.append(arg)
    return spec, rest


def is_single_pool(args: list[str]) -> bool:
    prefixes = tuple(f"{option}=" for option in SINGLE_POOL_OPTIONS)
    return any(arg in SINGLE_POOL_OPTIONS or arg.startswith(prefixes) for arg in args)


def known_queues() -> set[str]:
    """Every queue a worker could be asked to consume: BUZZER_QUEUES and the queue of
    every actor (the tasks modules `rundramatiq` loads, imported here the same way)."""
    import dramatiq
    from django.conf import settings
    from django_dramatiq.management.commands.rundramatiq import Command as Rundramatiq

    Rundramatiq(stdout=io.StringIO()).discover_tasks_modules()  # imports them: their actors declare their queues
    return set(settings.BUZZER_QUEUES) | {
        q for q in dramatiq.get_broker().get_declared_queues() if not q.endswith((".DQ", ".XQ"))
    }


def worker_groups(spec: str | None = None) -> list[topology.WorkerGroup]:
    from django.conf import settings

    return topology.resolve(topology.parse(spec or settings.BUZZER_WORKER_GROUPS), known_queues())


def group_arguments(group: topology.WorkerGroup) -> list[str]:
    return ["--processes", str(group.processes), "--threads", str(group.threads)]


def worker_environment() -> dict[str, str]:
    """The workers' environment: an idle consumer polls its queue every
    BUZZER_WORKER_POLL_MS at most (Dramatiq's default, 1 s, would make a delayed job or
    a job sent to a quiet queue wait up to a second more)."""
    from django.conf import settings

    environment = os.environ.copy()
    environment.setdefault("dramatiq_worker_timeout", str(settings.BUZZER_WORKER_POLL_MS))
    return environment


@dataclass
class Child:
    """One supervised `rundramatiq` and its restart state."""

    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = 1.0
    restart_at: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self.restart_at = None
        # Its own session: a terminal's Ctrl-C or honcho's group signal reaches it once, through forward().
        self.process = subprocess.Popen(self.command, env=worker_environment(), start_new_session=True)
        logger.warning("runworkers: started rundramatiq (group %s, pid %d)", self.name, self.process.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exited(self) -> int | None:
        """Its exit code once it has ended and is not yet scheduled to start again."""
        if self.process is None or self.restart_at is not None:
            return None
        return self.process.poll()


def supervise(command: list[str]) -> int:
    """One `rundramatiq` command under the supervisor."""
    return supervise_all([Child("pool", command)])


def supervise_all(children: list[Child]) -> int:
    stopping: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        for child in children:
            if child.running():
                child.process.send_signal(signum)  # type: ignore[union-attr]

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    def start(child: Child) -> None:
        child.start()
        if stopping:  # the signal came while it started: it must stop too
            child.process.send_signal(stopping[0])  # type: ignore[union-attr]

    for child in children:
        if not stopping:
            start(child)
    while not stopping:
        now = time.monotonic()
        for child in children:
            code = child.exited()
            if code is not None and not stopping:
                schedule_restart(child, code, now)
            elif child.restart_at is not None and now >= child.restart_at and not stopping:
                start(child)
        time.sleep(POLL_SECONDS)
    codes = [wait_for(child) for child in children]
    for child, code in zip(children, codes, strict=True):
        if code is not None:
            logger.warning("runworkers: rundramatiq stopped with exit code %d (group %s)", code, child.name)
    return next((code for code in codes if code), 0)


def schedule_restart(child: Child, code: int, now: float) -> None:
    if now - child.started >= HEALTHY_AFTER_SECONDS:
        child.delay = 1.0
    logger.error(
        "runworkers: rundramatiq exited unexpectedly (group %s, code %d); restarting in %.0f s",
        child.name,
        code,
        child.delay,
    )
    child.restart_at = now + child.delay
    child.delay = min(child.delay * 2, MAX_DELAY_SECONDS)


def wait_for(child: Child) -> int | None:
    """The exit code of a child that was running when the stop came; None for one that
    was waiting to be started again (it had already exited unexpectedly)."""
    if child.process is None or child.restart_at is not None:
        return None
    while True:
        try:
            return child.process.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries wait() itself
            continue
