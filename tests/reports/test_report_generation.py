"""Generating a report's file: streamed in chunks, progress throttled, cancellable,
cleaned up on failure, and done once however often its job is delivered."""

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext

import jobs
from reports import services
from reports.models import Report
from tests.support.reports import csv_rows, csv_text, many_items, new_report

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 11, 5, 12, tzinfo=timezone.utc)


@pytest.fixture
def hundred_items(products):
    many_items(products["BUZ-001"], 100, DAY)


def orders_report(user):
    return new_report(user, "orders", start="2026-11-01", end="2026-11-30")


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture(autouse=True)
def _own_temp_dir(tmp_path, monkeypatch):
    """Reports write their CSV under the temp directory first: one of this test's own,
    so that a report another test process writes meanwhile is not counted as left over."""
    own = tmp_path / "tmp"
    own.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own))


def leftover_temp_files() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("report-")}


def progress_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "reports_report" SET "progress"')]


def test_rows_are_read_in_chunks_and_all_written(user, hundred_items, settings):
    settings.BUZZER_REPORT_CHUNK_SIZE = 30
    report = orders_report(user)

    services.generate_report(str(report.id))

    report.refresh_from_db()
    assert (report.status, report.row_count, report.total_rows, report.progress) == ("succeeded", 100, 100, 100)
    assert len(csv_rows(csv_text(report))) == 101
    assert report.file_size == os.path.getsize(report.file.path)
    assert report.started_at <= report.finished_at
    assert report.duration_ms is not None


def test_progress_is_written_at_most_once_per_interval_not_per_row(user, hundred_items, settings):
    settings.BUZZER_REPORT_CHUNK_SIZE = 10
    settings.BUZZER_REPORT_PROGRESS_SECONDS = 3600
    report = orders_report(user)

    with CaptureQueriesContext(connection) as queries:
        services.generate_report(str(report.id))

    assert progress_writes(queries.captured_queries) == []  # 10 chunks, none an interval apart
    assert Report.objects.get(pk=report.pk).progress == 100


def test_progress_is_written_at_chunk_boundaries_when_due(user, hundred_items, no_throttle):
    report = orders_report(user)
    seen = []
    original = services._Checkpoints.reached

    def spy(self, done):
        original(self, done)
        current = Report.objects.get(pk=report.pk)
        seen.append((current.rows_done, current.progress))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services._Checkpoints, "reached", spy)
        services.generate_report(str(report.id))

    assert seen == [(n, min(n, 99)) for n in range(10, 101, 10)]


def test_cancelling_a_running_report_stops_it_and_removes_its_partial_file(
    user, hundred_items, no_throttle, media_root
):
    report = orders_report(user)
    before = leftover_temp_files()
    original = services._Checkpoints.reached

    def cancel_after_three_chunks(self, done):
        if done == 30:
            services.cancel_report(report)
        original(self, done)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services._Checkpoints, "reached", cancel_after_three_chunks)
        with pytest.raises(jobs.Cancelled):  # its job ends cancelled, not succeeded
            services.generate_report(str(report.id))

    report.refresh_from_db()
    assert report.status == "cancelled"
    assert report.rows_done == 20  # the last checkpoint before the cancel
    assert not report.file
    assert files_under(media_root) == []
    assert leftover_temp_files() == before


def test_a_failed_attempt_requeues_the_report_and_raises_for_a_retry(user, hundred_items, no_throttle, media_root):
    report = orders_report(user)
    before = leftover_temp_files()

    def broken(self, done):
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services._Checkpoints, "reached", broken)
        with pytest.raises(OSError, match="disk full"):
            services.generate_report(str(report.id))

    report.refresh_from_db()
    assert (report.status, report.attempts, report.error) == ("queued", 1, "OSError: disk full")
    assert files_under(media_root) == []
    assert leftover_temp_files() == before


@pytest.mark.django_db(transaction=True)
def test_a_report_fails_only_when_its_job_is_dead_and_comes_back_when_the_job_is_retried(
    user, hundred_items, no_throttle, media_root, stub_broker, stub_worker, operator
):
    from jobs import dlq
    from jobs.models import Job
    from tests.support.stub import drain

    report = orders_report(user)
    job = jobs.enqueue("generate_report", str(report.id), obj=report, options={"max_retries": 1, "min_backoff": 10})

    def broken(self, done):
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services._Checkpoints, "reached", broken)
        drain(stub_broker, stub_worker)  # two attempts, dead; then its on_dead hook runs
        drain(stub_broker, stub_worker)

    job.refresh_from_db()
    report.refresh_from_db()
    assert (job.status, job.attempts) == ("dead", 2)
    assert (report.status, report.error) == ("failed", "OSError: disk full")
    assert report.finished_at is not None
    assert files_under(media_root) == []

    assert dlq.retry(job.pk, user=operator) is True  # the disk was cleaned up: Retry
    report.refresh_from_db()
    assert report.status != "failed" and report.error == ""  # back with its job (a worker may have it already)
    drain(stub_broker, stub_worker)

    report.refresh_from_db()
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    assert (report.status, report.row_count) == ("succeeded", 100)
    assert len(csv_rows(csv_text(report))) == 101


def test_a_failure_while_storing_the_file_leaves_no_file(user, hundred_items, media_root, monkeypatch):
    report = orders_report(user)
    original_update = QuerySet.update

    def update(self, **values):
        if values.get("status") == "succeeded":
            raise RuntimeError("database went away")
        return original_update(self, **values)

    monkeypatch.setattr(QuerySet, "update", update)  # only the final "succeeded" update fails
    with pytest.raises(RuntimeError):
        services.generate_report(str(report.id))

    assert files_under(media_root) == []
    assert Report.objects.get(pk=report.pk).status == "queued"  # waits for its job's next try


def test_a_second_delivery_of_a_finished_report_does_nothing(user, hundred_items, media_root):
    report = orders_report(user)
    services.generate_report(str(report.id))
    report.refresh_from_db()

    with CaptureQueriesContext(connection) as queries:
        services.generate_report(str(report.id))

    assert len(queries.captured_queries) == 1  # read the report, see it finished, stop
    assert Report.objects.get(pk=report.pk).finished_at == report.finished_at
    assert len(files_under(media_root)) == 1


def test_a_report_cancelled_while_queued_is_never_generated(user, hundred_items, media_root):
    report = orders_report(user)
    assert services.cancel_report(report)

    with pytest.raises(jobs.Cancelled):
        services.generate_report(str(report.id))

    report.refresh_from_db()
    assert (report.status, report.attempts) == ("cancelled", 0)
    assert files_under(media_root) == []


@pytest.mark.django_db(transaction=True)
def test_a_report_of_an_unknown_kind_fails_at_once(user, stub_broker, stub_worker):
    from tests.support.stub import drain

    report = new_report(user, "nonsense")
    with pytest.raises(jobs.PermanentError, match="Unknown report kind"):
        services.generate_report(str(report.id))
    job = jobs.enqueue("generate_report", str(report.id), obj=report)

    drain(stub_broker, stub_worker)  # a PermanentError: dead at the first attempt
    drain(stub_broker, stub_worker)  # its on_dead hook

    job.refresh_from_db()
    report.refresh_from_db()
    assert (job.status, job.attempts) == ("dead", 1)
    assert report.status == "failed" and "Unknown report kind" in report.error
