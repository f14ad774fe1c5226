"""Recurring jobs from `jobs.Schedule` rows, fired by APScheduler in `runscheduler`.

The scheduler only enqueues. Each fire writes one job under the key
``schedule:<id>:<fire time>``, so two schedulers firing the same time (a lease handover,
a split brain) still write one job. A scheduler that was down runs a missed fire once
(coalesced), under the key of the latest missed time.
"""

from __future__ import annotations

import logging
import uuid
import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.models import Job, JobAction, Schedule
from jobs.services import enqueue

logger = logging.getLogger(__name__)

# How far back `latest_fire` looks for the fire time that is due now.
LOOKBACK = timedelta(days=1)


def trigger_for(cron: str, tz: str) -> CronTrigger:
    """A CronTrigger from 5 crontab fields, or 6 with seconds first. ValueError if bad."""
    fields = cron.split()
    zone = zoneinfo.ZoneInfo(tz)
    if len(fields) == 5:
        return CronTrigger.from_crontab(cron, timezone=zone)
    if len(fields) == 6:
        second, minute, hour, day, month, day_of_week = fields
        return CronTrigger(
            second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=zone
        )
    raise ValueError("a cron expression has 5 fields (or 6, with seconds first)")


def validate(cron: str, tz: str) -> None:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError({"timezone": f"Unknown time zone {tz!r}."}) from None
    try:
        trigger_for(cron, tz)
    except ValueError as exc:
        raise ValidationError({"cron": f"Not a valid cron expression: {exc}"}) from None


def next_runs(schedule: Schedule, count: int = 3, now: datetime | None = None) -> list[datetime]:
    trigger = trigger_for(schedule.cron, schedule.timezone)
    runs: list[datetime] = []
    previous = None
    moment = now or timezone.now()
    while len(runs) < count:
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            break
        runs.append(fire)
        previous, moment = fire, fire + timedelta(microseconds=1)
    return runs


def latest_fire(schedule: Schedule, now: datetime) -> datetime | None:
    """The latest fire time at or before `now` (what a fire at `now` stands for)."""
    trigger = trigger_for(schedule.cron, schedule.timezone)
    # Look back 1 s, then 2 s, 4 s … up to LOOKBACK, and walk forward from the first
    # window that holds a fire time. Walking a whole day forward cost 86,400 trigger
    # steps (3.5 s of CPU) on every fire of a per-second schedule, so the scheduler fell
    # seconds behind its fire times; now the walk covers at most twice the distance to
    # the latest fire time.
    window = timedelta(seconds=1)
    while True:
        window = min(window, LOOKBACK)
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is not None and fire <= now:
            break
        if window >= LOOKBACK:
            return None
        window *= 2
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest


def fire_key(schedule: Schedule, fire_time: datetime) -> str:
    return f"schedule:{schedule.pk}:{fire_time.astimezone(zoneinfo.ZoneInfo('UTC')).isoformat()}"


def _latest_fired(schedule: Schedule) -> datetime | None:
    """The newest fire time this schedule has a job for (manual runs aside)."""
    prefix = f"schedule:{schedule.pk}:"
    key = (
        Job.objects.filter(key__gte=f"{prefix}0", key__lt=f"{prefix}9")  # ISO times, not "manual"
        .order_by("-key")
        .values_list("key", flat=True)
        .first()
    )
    return datetime.fromisoformat(key.removeprefix(prefix)) if key else None


def due_fires(schedule: Schedule, now: datetime) -> list[datetime]:
    """The fire times to write now: every one since the last written, if the scheduler is
    merely late (up to BUZZER_SCHEDULE_LATE_SECONDS); after a longer silence only the
    latest (a missed fire runs once, not once per missed slot)."""
    latest = latest_fire(schedule, now)
    if latest is None or latest < schedule.created_at:  # nothing due since it was created
        return []
    fired = _latest_fired(schedule)
    window_start = now - timedelta(seconds=settings.BUZZER_SCHEDULE_LATE_SECONDS)
    if fired is None or fired < window_start:
        return [] if fired is not None and fired >= latest else [latest]
    trigger = trigger_for(schedule.cron, schedule.timezone)
    fires = []
    moment = trigger.get_next_fire_time(fired, fired + timedelta(microseconds=1))
    while moment is not None and moment <= now:
        fires.append(moment)
        moment = trigger.get_next_fire_time(moment, moment + timedelta(microseconds=1))
    return fires


def fire(schedule_id: int, now: datetime | None = None) -> list[Job]:
    """Enqueue the jobs of the fire times due now (once each, however many schedulers call)."""
    schedule = Schedule.objects.filter(pk=schedule_id, enabled=True).first()
    if schedule is None:
        return []
    written = []
    for fire_time in due_fires(schedule, now or timezone.now()):
        key = fire_key(schedule, fire_time)
        try:
            with transaction.atomic():
                written.append(enqueue(schedule.actor_name, key=key, obj=schedule, **schedule.kwargs))
        except IntegrityError:  # another scheduler wrote it between our read and our insert
            written.append(Job.objects.get(key=key))
        logger.info("Schedule %s fired for %s", schedule.name, fire_time)
    return written


def run_now(schedule: Schedule, user: Any = None) -> Job:
    """Enqueue the schedule's job at once, outside its cron times (audited)."""
    with transaction.atomic():
        job = enqueue(
            schedule.actor_name, key=f"schedule:{schedule.pk}:manual:{uuid.uuid4()}", obj=schedule, **schedule.kwargs
        )
        _audit(schedule, JobAction.Kind.RUN_NOW, user, job=job)
    return job


def set_enabled(schedule: Schedule, enabled: bool, user: Any = None) -> bool:
    """Pause or resume a schedule (audited). False when it already was so."""
    with transaction.atomic():
        if not Schedule.objects.filter(pk=schedule.pk, enabled=not enabled).update(
            enabled=enabled, updated_at=timezone.now()
        ):
            return False
        schedule.enabled = enabled
        _audit(schedule, JobAction.Kind.RESUME if enabled else JobAction.Kind.PAUSE, user)
    return True


def _audit(schedule: Schedule, kind: str, user: Any, job: Job | None = None) -> None:
    JobAction.objects.create(
        job=job,
        kind=kind,
        subject=f"schedule {schedule.pk}: {schedule.name}"[:200],
        user=user if getattr(user, "is_authenticated", False) else None,
    )


def last_runs(schedule: Schedule, count: int = 5) -> list[Job]:
    return list(
        Job.objects.filter(object_type="jobs.schedule", object_id=str(schedule.pk)).order_by("-created_at")[:count]
    )
