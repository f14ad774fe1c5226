"""The scheduler under faults: three `runscheduler` processes write one job per fire time
(no gap, none twice) while the active one is SIGKILLed and a standby takes over; a
scheduler back from a long outage runs each schedule's missed fires once, one back from a
short outage (under BUZZER_SCHEDULE_LATE_SECONDS) writes every fire time it missed.

Both tests run with the product's default timings (lease 5 s, schedule sync 2 s, late
window 60 s): the handover bar of 10 s is checked against what production runs."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from jobs import schedules
from jobs.management.commands.runscheduler import lease_key
from jobs.models import Job, Schedule
from tests.faults.conftest import FaultStack
from tests.support.figures import record
from tests.support.keys import key
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

FIRES = 60
HANDOVER_BAR_SECONDS = 10
ACTOR = "prune_idempotency_keys"  # cheap, no arguments


def fired_jobs(schedule: Schedule) -> dict[datetime, Job]:
    """The schedule's jobs by fire time (manual runs aside)."""
    prefix = f"schedule:{schedule.pk}:"
    jobs = Job.objects.filter(key__startswith=prefix).exclude(key__startswith=f"{prefix}manual:")
    return {datetime.fromisoformat(job.key.removeprefix(prefix)): job for job in jobs}


def queued_ids(stack: FaultStack) -> Counter[str]:
    """How many times each job (message id) was sent to the default queue, where it waits
    (no worker takes them). Dramatiq queues each send under a Redis id of its own."""
    client = stack.redis.client()
    redis_ids = client.lrange(key("default"), 0, -1)
    payloads = client.hmget(key("default.msgs"), redis_ids) if redis_ids else []
    return Counter(json.loads(payload)["message_id"] for payload in payloads if payload)


def lease_holder_pid(stack: FaultStack) -> int | None:
    holder = stack.redis.client().get(lease_key())
    return int(holder.decode().split(":")[1]) if holder else None


def test_three_schedulers_write_each_fire_time_once_and_a_standby_takes_over_within_10s(stack: FaultStack) -> None:
    assert settings.BUZZER_SCHEDULER_LEASE_SECONDS == 5.0  # the default, not a test-only shortcut
    schedule = Schedule.objects.create(name="every second", actor_name=ACTOR, cron="* * * * * *")
    procs = {proc.pid: proc for proc in (stack.scheduler() for _ in range(3))}

    first = wait_until(lambda: min(fired_jobs(schedule), default=None), timeout=60, what="the first fire")
    wait_until(lambda: len(fired_jobs(schedule)) >= 20, timeout=60, what="twenty fires")
    active_pid = wait_until(lambda: lease_holder_pid(stack), timeout=10, what="the lease holder")
    assert active_pid in procs, (active_pid, list(procs))
    os.kill(active_pid, signal.SIGKILL)
    killed_at = timezone.now()
    procs[active_pid].wait(10)

    new_pid = wait_until(
        lambda: (pid := lease_holder_pid(stack)) and pid != active_pid and pid, timeout=30, what="a new lease holder"
    )
    last = first + timedelta(seconds=FIRES - 1)
    wait_until(lambda: max(fired_jobs(schedule)) >= last + timedelta(seconds=2), timeout=120, what=f"{FIRES} fires")

    for proc in procs.values():  # the rest stop cleanly: every job they wrote is counted below
        proc.terminate()
        proc.wait(15)

    fires = fired_jobs(schedule)
    window = sorted(t for t in fires if first <= t <= last)
    assert len(window) == FIRES
    assert window == [first + timedelta(seconds=i) for i in range(FIRES)]  # no gap
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(sorted(fires))} == {1.0}  # nor after it
    assert len(fires) == Job.objects.filter(object_type="jobs.schedule", object_id=str(schedule.pk)).count()
    queued = queued_ids(stack)
    assert all(queued[str(job.id)] >= 1 for job in fires.values())  # every job handed to Redis
    # A scheduler killed after sending a job but before marking it enqueued leaves it to
    # the outbox sweep, which sends it again; the worker's claim runs it once.
    resent = sum(queued[str(job.id)] - 1 for job in fires.values())

    # Run them: each job once, by the count of finished attempts the workers keep in Redis.
    stack.workers(processes=1, threads=4)
    wait_until(
        lambda: (
            Job.objects.filter(pk__in=[job.pk for job in fires.values()], status=Job.Status.SUCCEEDED).count()
            == len(fires)
        ),
        timeout=60,
        what="every fired job to run",
    )
    client = stack.redis.client()
    wait_until(lambda: client.llen(key("default")) == 0, timeout=30, what="the queue to drain")
    # The actor is also @periodic: each scheduler writes its slot's job when it starts
    # (one job per slot for all three); those runs are counted apart.
    periodic = Job.objects.filter(actor_name=ACTOR, key__startswith=f"periodic:{ACTOR}:")
    wait_until(lambda: not periodic.exclude(status=Job.Status.SUCCEEDED).exists(), timeout=30, what="the periodic run")
    time.sleep(1)  # a second run of any job would be counted by now
    runs = int(client.hget(key("buzzer:stats:totals"), f"c|{ACTOR}|succeeded") or 0) - periodic.count()
    assert runs == len(fires), (runs, len(fires))
    assert set(Job.objects.filter(pk__in=[job.pk for job in fires.values()]).values_list("attempts", flat=True)) == {1}

    written_after_kill = {t: job for t, job in fires.items() if job.created_at > killed_at}
    taken_over_at = min(job.created_at for job in written_after_kill.values())
    handover = (taken_over_at - killed_at).total_seconds()
    backfilled = [t for t in written_after_kill if t <= taken_over_at]  # missed while no one was active
    assert handover < HANDOVER_BAR_SECONDS, f"handover took {handover:.1f}s"
    assert new_pid in procs
    record(
        f"Scheduler: 3 processes, {len(window)}/{FIRES} fire times -> {len(window)} jobs, 0 gaps, 0 doubles "
        f"({len(fires)} jobs in all ran {runs} times; {resent} re-sent after the kill, run once); "
        f"the active one SIGKILLed, a standby wrote again {handover:.1f} s later (bar {HANDOVER_BAR_SECONDS} s, "
        f"lease {settings.BUZZER_SCHEDULER_LEASE_SECONDS:g} s) and back-filled the {len(backfilled)} fire times "
        "missed meanwhile"
    )


def leave_outage_state(schedule: Schedule, last_fire: datetime) -> None:
    """What a scheduler that went down after `last_fire` leaves in the database: the jobs
    of the last fire times it wrote (and ran). Nothing else records fire state."""
    times = [last_fire]
    while len(times) < 3:
        before = schedules.latest_fire(schedule, times[-1] - timedelta(microseconds=1))
        assert before is not None
        times.append(before)
    for fire_time in times:
        Job.objects.create(
            actor_name=schedule.actor_name,
            key=schedules.fire_key(schedule, fire_time),
            object_type="jobs.schedule",
            object_id=str(schedule.pk),
            status=Job.Status.SUCCEEDED,
            attempts=1,
            created_at=fire_time,
            enqueued_at=fire_time,
            started_at=fire_time,
            finished_at=fire_time,
        )


def fire_times_between(schedule: Schedule, after: datetime, until: datetime) -> int:
    """How many fire times the schedule has in (after, until]."""
    trigger = schedules.trigger_for(schedule.cron, schedule.timezone)
    count, moment = 0, trigger.get_next_fire_time(after, after + timedelta(microseconds=1))
    while moment is not None and moment <= until:
        count += 1
        moment = trigger.get_next_fire_time(moment, moment + timedelta(microseconds=1))
    return count


def written_on_return(schedule: Schedule, last: datetime) -> dict[datetime, Job]:
    return {t: job for t, job in fired_jobs(schedule).items() if t > last}


def test_a_scheduler_back_after_10_minutes_runs_each_missed_schedule_once(stack: FaultStack) -> None:
    late_window = settings.BUZZER_SCHEDULE_LATE_SECONDS
    assert late_window == 60.0  # the default
    now = timezone.now()
    an_hour_ago = now - timedelta(hours=1)
    crons = {"every second": "* * * * * *", "every minute": "* * * * *", "every 5 minutes": "*/5 * * * *"}
    outage: dict[Schedule, datetime] = {}
    for name, cron in crons.items():
        schedule = Schedule.objects.create(name=name, actor_name=ACTOR, cron=cron, created_at=an_hour_ago)
        last = schedules.latest_fire(schedule, now - timedelta(minutes=10))
        assert last is not None
        leave_outage_state(schedule, last)
        outage[schedule] = last
    # A short outage, under the late window: every missed fire time is still written.
    short = Schedule.objects.create(name="short outage", actor_name=ACTOR, cron="* * * * * *", created_at=an_hour_ago)
    short_last = schedules.latest_fire(short, now - timedelta(seconds=20))
    assert short_last is not None
    leave_outage_state(short, short_last)

    stack.scheduler()
    wait_until(
        lambda: all(written_on_return(s, last) for s, last in [*outage.items(), (short, short_last)]),
        timeout=60,
        what="the scheduler to fire every schedule",
    )
    time.sleep(3)  # regular fires after the catch-up, and a second catch-up if there were one

    figures = []
    for schedule, last in outage.items():
        after = written_on_return(schedule, last)
        catch_up = min(after.values(), key=lambda job: job.created_at)  # the first job written on return
        catch_up_fire = next(t for t, job in after.items() if job.pk == catch_up.pk)
        runs_for_outage = sorted(t for t in after if t <= catch_up.created_at)
        missed = fire_times_between(schedule, last, catch_up.created_at)
        assert runs_for_outage == [catch_up_fire], (schedule.name, runs_for_outage, catch_up.created_at)
        # It stands for the latest missed fire time, and regular fires follow it.
        assert catch_up_fire == min(after), (schedule.name, catch_up_fire, min(after))
        assert fire_times_between(schedule, catch_up_fire, catch_up.created_at) <= 1  # (a second may tick over)
        assert not [job for job in after.values() if job.status == Job.Status.PENDING]  # all handed to Redis
        figures.append(f"{schedule.name} {missed} missed fire times -> {len(runs_for_outage)} run")

    after_short = written_on_return(short, short_last)
    resumed_at = min(job.created_at for job in after_short.values())
    short_fires = sorted(after_short)
    backfilled = [t for t in short_fires if t <= resumed_at]
    assert short_fires == [short_last + timedelta(seconds=i + 1) for i in range(len(short_fires))]  # each, once
    assert len(backfilled) == fire_times_between(short, short_last, resumed_at) >= 20
    queued = queued_ids(stack)
    assert [queued[str(job.id)] for job in after_short.values()] == [1] * len(after_short)
    record(
        "Scheduler back from a 10-minute outage: "
        + ", ".join(figures)
        + f"; back from a {(resumed_at - short_last).total_seconds():.0f} s outage (< {late_window:g} s): all "
        f"{len(backfilled)} missed fire times written, each once, none skipped"
    )
