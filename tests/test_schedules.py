"""Schedules: cron rows that the scheduler turns into one job per fire time."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from jobs import schedules
from jobs.models import Job, Schedule

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stub(stub_broker):
    return stub_broker


def make(cron="0 6 * * *", tz="UTC", **fields):
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return Schedule.objects.create(
        name=fields.pop("name", f"s-{cron}"), actor_name="prune_idempotency_keys", cron=cron, timezone=tz,
        created_at=created, **fields,
    )  # fmt: skip


def test_next_runs_follow_the_cron_in_its_time_zone():
    schedule = make("0 6 * * *", tz="Europe/Paris")
    runs = schedules.next_runs(schedule, count=2, now=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert [r.astimezone(UTC) for r in runs] == [
        datetime(2026, 6, 2, 4, 0, tzinfo=UTC),  # 06:00 in Paris, summer time
        datetime(2026, 6, 3, 4, 0, tzinfo=UTC),
    ]


def test_six_fields_mean_seconds_first():
    schedule = make("*/10 * * * * *")
    runs = schedules.next_runs(schedule, count=3, now=datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC))
    assert [r.second for r in runs] == [10, 20, 30]


@pytest.mark.parametrize(("cron", "tz"), [("61 * * * *", "UTC"), ("* * *", "UTC"), ("0 6 * * *", "Mars/Olympus")])
def test_bad_cron_or_time_zone_is_refused(cron, tz):
    with pytest.raises(ValidationError):
        Schedule(name="x", actor_name="a", cron=cron, timezone=tz).full_clean()


def test_a_fire_writes_one_job_per_fire_time_however_often_it_is_called():
    schedule = make("0 * * * *")
    at = datetime(2026, 6, 1, 12, 0, 0, 300_000, tzinfo=UTC)

    (first,) = schedules.fire(schedule.pk, now=at)
    assert schedules.fire(schedule.pk, now=at + timedelta(seconds=2)) == []  # another scheduler, late
    (next_hour,) = schedules.fire(schedule.pk, now=at + timedelta(hours=1))

    assert first.pk != next_hour.pk
    assert first.key == f"schedule:{schedule.pk}:2026-06-01T12:00:00+00:00"
    assert Job.objects.filter(object_type="jobs.schedule").count() == 2


def test_a_late_scheduler_writes_every_fire_time_it_missed():
    schedule = make("* * * * * *")
    at = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    schedules.fire(schedule.pk, now=at)

    late = schedules.fire(schedule.pk, now=at + timedelta(seconds=3, milliseconds=200))

    assert [job.key[-14:-6] for job in late] == ["12:00:01", "12:00:02", "12:00:03"]


def test_after_a_long_silence_a_missed_fire_runs_once():
    schedule = make("*/5 * * * *")  # every 5 minutes
    at = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    schedules.fire(schedule.pk, now=at)

    after_downtime = schedules.fire(schedule.pk, now=at + timedelta(minutes=10, seconds=30))

    assert [job.key[-14:-6] for job in after_downtime] == ["12:10:00"]


def test_a_paused_schedule_does_not_fire():
    schedule = make("* * * * *", enabled=False)
    assert schedules.fire(schedule.pk) == []
    assert Job.objects.count() == 0


def test_run_now_enqueues_outside_the_cron_times():
    schedule = make("0 6 1 1 *")
    first, second = schedules.run_now(schedule), schedules.run_now(schedule)
    assert first.pk != second.pk
    assert [j.pk for j in schedules.last_runs(schedule)] == [second.pk, first.pk]


def test_admin_shows_next_runs_and_has_run_now_and_pause(operator):
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(*Permission.objects.filter(codename__in=["view_schedule", "run_schedule"]))
    schedule = make("0 6 * * *")
    client = Client()
    client.force_login(operator)

    page = client.get(f"/admin/jobs/schedule/{schedule.pk}/change/").content.decode()
    assert 'id="run-now"' in page and ">Pause<" in page and "06:00:00" in page

    client.post(f"/admin/jobs/schedule/{schedule.pk}/run-now/")
    assert Job.objects.filter(object_id=str(schedule.pk)).count() == 1
    client.post(f"/admin/jobs/schedule/{schedule.pk}/pause/")
    assert not Schedule.objects.get(pk=schedule.pk).enabled
    client.post(f"/admin/jobs/schedule/{schedule.pk}/pause/")
    assert Schedule.objects.get(pk=schedule.pk).enabled
    # Every one of them is in the audit log, with who did it.
    from jobs.models import JobAction

    audit = list(JobAction.objects.order_by("at", "pk").values_list("kind", "user", "subject"))
    subject = f"schedule {schedule.pk}: {schedule.name}"
    assert audit == [
        ("run_now", operator.pk, subject),
        ("pause", operator.pk, subject),
        ("resume", operator.pk, subject),
    ]
    assert JobAction.objects.get(kind="run_now").job_ref == Job.objects.get(object_id=str(schedule.pk)).pk


def test_periodic_jobs_fire_when_the_scheduler_starts_not_one_interval_later():
    from django.utils import timezone

    from jobs.management.commands.runscheduler import build_scheduler

    started = timezone.now()
    periodic = [job for job in build_scheduler().get_jobs() if job.id.startswith("periodic:")]

    assert periodic, "no @periodic job registered"
    for job in periodic:
        assert job.next_run_time <= started + timedelta(seconds=1), (job.id, job.next_run_time)


def test_an_hourly_job_runs_every_hour_though_its_scheduler_restarts_every_20_minutes():
    from jobs.periodic import Periodic, enqueue_due

    entry = Periodic("prune_idempotency_keys", 3600)
    start = datetime(2026, 11, 29, 10, 5, tzinfo=UTC).timestamp()
    for restart in range(9):  # three hours; each scheduler fires at its start, then dies before the hour
        enqueue_due(entry, now=start + restart * 1200)

    slots = sorted(Job.objects.filter(key__startswith="periodic:prune_idempotency_keys:").values_list("key", flat=True))
    assert len(slots) == 3  # 10:05-11:00, 11:00-12:00, 12:00-13:00: one run each, none twice


def test_run_now_and_pause_need_their_permission(viewer):
    schedule = make("0 6 * * *")
    client = Client()
    client.force_login(viewer)
    assert client.post(f"/admin/jobs/schedule/{schedule.pk}/run-now/").status_code == 403
    assert client.post(f"/admin/jobs/schedule/{schedule.pk}/pause/").status_code == 403
    assert Job.objects.count() == 0 and Schedule.objects.get(pk=schedule.pk).enabled


def test_a_new_schedule_does_not_fire_for_times_before_it_existed():
    schedule = make("0 6 * * *")
    Schedule.objects.filter(pk=schedule.pk).update(created_at=datetime(2026, 6, 1, 10, 0, tzinfo=UTC))
    schedule.refresh_from_db()

    assert schedules.fire(schedule.pk, now=datetime(2026, 6, 1, 10, 0, 5, tzinfo=UTC)) == []
    assert len(schedules.fire(schedule.pk, now=datetime(2026, 6, 2, 6, 0, 1, tzinfo=UTC))) == 1


def test_schedule_list_shows_each_next_run(operator):
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    make("30 6 * * *", name="daily")
    make("0 7 * * *", name="paused", enabled=False)
    client = Client()
    client.force_login(operator)

    page = client.get("/admin/jobs/schedule/").content.decode()

    assert "06:30:00 UTC" in page and "paused" in page
