"""Three real `runscheduler` processes: one fires, the others stand by; every fire time
gives one job; killing the active one hands over within seconds."""

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest
import redis
from django.conf import settings

from jobs.models import Job, Schedule
from tests.support.waiting import wait_until
from tests.support.workers import ROOT, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def fire_times(schedule: Schedule) -> list[datetime]:
    keys = Job.objects.filter(object_type="jobs.schedule", object_id=str(schedule.pk)).values_list("key", flat=True)
    return sorted(datetime.fromisoformat(key.split(":", 2)[2]) for key in keys)


def test_three_schedulers_fire_each_second_once_and_hand_over_when_the_active_dies(real_broker):
    schedule = Schedule.objects.create(name="every second", actor_name="prune_idempotency_keys", cron="* * * * * *")
    env = worker_env(BUZZER_SCHEDULER_LEASE_SECONDS="3", BUZZER_SCHEDULE_SYNC_SECONDS="0.5")
    logs = [(ROOT / "var" / f"test-scheduler-{os.getpid()}-{i}.log").open("wb") for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for log in logs
    ]
    try:
        wait_until(lambda: len(fire_times(schedule)) >= 10, timeout=40, what="ten fires")
        # Past the start (the lease, the first sync and a catch-up fire), every second once.
        steady = fire_times(schedule)[2:]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(steady)]
        assert all(gap == 1 for gap in gaps), gaps

        holder = redis.Redis.from_url(settings.REDIS_URL).get("buzzer:scheduler:lease").decode()
        active = next(p for p in procs if f":{p.pid}:" in holder)
        os.killpg(active.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        count_at_kill = len(fire_times(schedule))
        wait_until(lambda: len(fire_times(schedule)) > count_at_kill + 1, timeout=20, what="a standby to fire")
        handover = time.monotonic() - killed_at
        time.sleep(3)
        after = fire_times(schedule)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in zip(procs, logs, strict=True):
            proc.wait(30)
            log.close()

    assert handover < 10, f"handover took {handover:.1f}s"
    assert len(after) == len(set(after))
    # Across the handover too: the new scheduler writes the fire times the dead one missed.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(after[2:])]
    assert set(gaps) == {1}, gaps
    print(f"Scheduler: {len(after)} fire times, 0 doubles, handover in {handover:.1f}s")
