"""`manage.py runscheduler`: the APScheduler process. It only enqueues and sweeps; the
work itself always runs on the Dramatiq workers."""

import logging
import signal
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from jobs import monitoring, recovery, services
from jobs.periodic import Periodic, enqueue_due, registered

logger = logging.getLogger(__name__)


def sweep_outbox() -> None:
    close_old_connections()
    try:
        services.sweep_outbox()
    finally:
        close_old_connections()


def recover_stalled() -> None:
    close_old_connections()
    try:
        recovery.recover_stalled()
    finally:
        close_old_connections()


# --- Queue health: samples and alerts, pruning -----------------------------------------
def sample_queues() -> None:
    close_old_connections()
    try:
        monitoring.sample_and_check()
    finally:
        close_old_connections()


def prune_history() -> None:
    close_old_connections()
    try:
        monitoring.prune_history()
    finally:
        close_old_connections()


def add_queue_health_jobs(scheduler: BlockingScheduler) -> None:
    scheduler.add_job(
        sample_queues,
        "interval",
        seconds=settings.BUZZER_SAMPLE_SECONDS,
        id="queue-health-sample",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(prune_history, "interval", hours=1, id="queue-health-prune", max_instances=1, coalesce=True)


# --- end of queue health ----------------------------------------------------------------


def enqueue_periodic(entry: Periodic) -> None:
    close_old_connections()
    try:
        enqueue_due(entry)
    finally:
        close_old_connections()


class Command(BaseCommand):
    help = "Run the scheduler: the outbox sweep and the periodic jobs (it only enqueues)."

    def handle(self, *args: Any, **options: Any) -> None:
        scheduler = BlockingScheduler(timezone=settings.TIME_ZONE)
        scheduler.add_job(
            sweep_outbox,
            "interval",
            seconds=settings.BUZZER_SWEEP_INTERVAL_SECONDS,
            id="outbox-sweep",
            max_instances=1,
            coalesce=True,
        )

        # Stalled jobs: what a dead worker held goes back to the queue within seconds.
        scheduler.add_job(
            recover_stalled,
            "interval",
            seconds=settings.BUZZER_RECOVERY_INTERVAL_SECONDS,
            id="stalled-recovery",
            max_instances=1,
            coalesce=True,
        )
        # Queue health: a sample of every queue and the alerts every few seconds, pruning hourly.
        add_queue_health_jobs(scheduler)

        for entry in registered():
            scheduler.add_job(
                enqueue_periodic,
                "interval",
                args=[entry],
                seconds=entry.seconds,
                id=f"periodic:{entry.actor_name}",
                max_instances=1,
                coalesce=True,
            )

        def stop(signum: int, frame: Any) -> None:
            logger.info("Scheduler stopping on signal %s", signum)
            scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Scheduler running: outbox sweep every {settings.BUZZER_SWEEP_INTERVAL_SECONDS}s")
        scheduler.start()
