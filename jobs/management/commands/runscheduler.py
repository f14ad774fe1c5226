"""`manage.py runscheduler`: the scheduler process. It only enqueues and sweeps; the work
itself always runs on the Dramatiq workers.

Only the holder of a lease in Redis schedules (see jobs/lease.py); a second process
waits as a hot standby and takes over when the first dies.
"""

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from apscheduler.schedulers.background import BackgroundScheduler
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from jobs import monitoring, recovery, redis_client, schedules, services
from jobs.lease import Lease
from jobs.models import Schedule
from jobs.periodic import enqueue_due, registered

logger = logging.getLogger(__name__)


def lease_key() -> str:
    return f"{settings.BUZZER_NAMESPACE}:buzzer:scheduler:lease"


def with_connections(work: Callable[..., Any]) -> Callable[..., None]:
    """Run `work` on a healthy database connection and log, never raise, its errors."""

    def run(*args: Any) -> None:
        close_old_connections()
        try:
            work(*args)
        except Exception:
            logger.exception("Scheduled %s failed", getattr(work, "__name__", work))
        finally:
            close_old_connections()

    run.__name__ = getattr(work, "__name__", "job")
    return run


sweep_outbox = with_connections(services.sweep_outbox)
release_due = with_connections(services.release_due)
recover_stalled = with_connections(recovery.recover_stalled)
enqueue_periodic = with_connections(enqueue_due)
fire_schedule = with_connections(schedules.fire)


# --- Queue health: samples and alerts, pruning -----------------------------------------
sample_queues = with_connections(monitoring.sample_and_check)
prune_history = with_connections(monitoring.prune_history)


def add_queue_health_jobs(scheduler: Any) -> None:
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


class ScheduleSync:
    """Keeps APScheduler's cron jobs equal to the enabled `Schedule` rows, so that admin
    edits apply within seconds without a restart."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.first = True

    def __call__(self) -> None:
        close_old_connections()
        try:
            self.sync()
        except Exception:
            logger.exception("Syncing the schedules failed")
        finally:
            close_old_connections()

    def sync(self) -> None:
        wanted = {f"schedule:{s.pk}:{s.updated_at.timestamp()}": s for s in Schedule.objects.filter(enabled=True)}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("schedule:") and job.id not in wanted:
                self.scheduler.remove_job(job.id)
        present = {job.id for job in self.scheduler.get_jobs()}
        for job_id, schedule in wanted.items():
            if job_id in present:
                continue
            try:
                trigger = schedules.trigger_for(schedule.cron, schedule.timezone)
            except Exception as exc:  # noqa: BLE001 - a bad row must not stop the others
                logger.error("Schedule %s has a bad cron or time zone: %s", schedule.name, exc)
                continue
            self.scheduler.add_job(
                fire_schedule,
                trigger,
                args=[schedule.pk],
                id=job_id,
                # A slow fire (a cold connection) must not make the next one skip: fires
                # are idempotent by their key, so overlapping is safe.
                max_instances=5,
                coalesce=True,
                misfire_grace_time=None,
            )
            if self.first:
                self.catch_up(schedule)
        self.first = False

    @staticmethod
    def catch_up(schedule: Schedule) -> None:
        """Fires missed while no scheduler was active: the latest runs once (coalesced)."""
        if schedules.latest_fire(schedule, timezone.now()) is not None:
            schedules.fire(schedule.pk)


def build_scheduler() -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=settings.TIME_ZONE)
    scheduler.add_job(
        sweep_outbox,
        "interval",
        seconds=settings.BUZZER_SWEEP_INTERVAL_SECONDS,
        id="outbox-sweep",
        max_instances=1,
        coalesce=True,
    )
    # Delayed jobs: handed to Redis when they are due (the row holds them until then).
    scheduler.add_job(
        release_due,
        "interval",
        seconds=settings.BUZZER_DUE_POLL_SECONDS,
        id="due-jobs",
        max_instances=1,
        coalesce=True,
        next_run_time=timezone.now(),
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
        # First fire at start, not one interval later: a scheduler restarted (or handed
        # over) more often than the interval would otherwise never run the job. The slot
        # key makes the start's fire and a fire already written this slot one job.
        scheduler.add_job(
            enqueue_periodic,
            "interval",
            args=[entry],
            seconds=entry.seconds,
            id=f"periodic:{entry.actor_name}",
            max_instances=1,
            coalesce=True,
            next_run_time=timezone.now(),
        )
    sync = ScheduleSync(scheduler)
    scheduler.add_job(
        sync,
        "interval",
        seconds=settings.BUZZER_SCHEDULE_SYNC_SECONDS,
        id="schedule-sync",
        max_instances=1,
        coalesce=True,
        next_run_time=timezone.now(),
    )
    return scheduler


class Command(BaseCommand):
    help = "Run the scheduler (one active at a time): outbox sweep, recovery, periodic and scheduled jobs."

    def handle(self, *args: Any, **options: Any) -> None:
        client = redis_client.client(settings.BROKER_URL)
        ttl = settings.BUZZER_SCHEDULER_LEASE_SECONDS
        lease = Lease(client, lease_key(), ttl)
        stopping = threading.Event()

        def stop(signum: int, frame: Any) -> None:
            logger.info("Scheduler stopping on signal %s", signum)
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Scheduler {lease.holder} started; waiting for the lease")
        scheduler: BackgroundScheduler | None = None
        renewed_at = 0.0
        try:
            while not stopping.is_set():
                try:
                    if scheduler is None and lease.acquire():
                        renewed_at = time.monotonic()
                        scheduler = build_scheduler()
                        scheduler.start()
                        logger.warning("Scheduler %s is active", lease.holder)
                    elif scheduler is not None and lease.renew():
                        renewed_at = time.monotonic()
                    elif scheduler is not None:
                        logger.error("Scheduler %s lost its lease: standing by", lease.holder)
                        scheduler.shutdown(wait=False)
                        scheduler = None
                except redis.RedisError as exc:
                    logger.warning("Scheduler lease: Redis does not answer (%s)", exc)
                    if scheduler is not None and time.monotonic() - renewed_at > ttl:
                        # Our lease has expired meanwhile: another may hold it now.
                        scheduler.shutdown(wait=False)
                        scheduler = None
                stopping.wait(ttl / 4)
        finally:
            if scheduler is not None:
                # Not wait=True: APScheduler would hold its job-store lock while waiting
                # for the schedule sync, which needs that lock (a deadlock).
                scheduler.shutdown(wait=False)
            try:
                lease.release()  # the standby takes over at once
            except redis.RedisError:
                pass
