"""Reports: requesting one (inline, in the web request), generating it (on a worker),
cancelling it, and expiring old files.

How a failed generation ends: the report follows its job (one lifecycle, `jobs.lifecycle`).
An attempt that fails puts the report back to `queued` with the reason and re-raises, so
the job's retry policy decides what comes next. When the job is dead for good (out of
retries, a `PermanentError` for bad data, a crash loop), its `on_dead` hook marks the
report `failed` (`fail_for_dead_job`); when an operator retries the dead job, its
`on_retry` hook puts the report back to `queued` (`requeue_for_retried_job`) and it is
generated afresh.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.db import connection, connections, transaction
from django.db.models import F, QuerySet
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

import jobs
from orders.models import ApiKey
from reports import kinds
from reports.models import Report

logger = logging.getLogger(__name__)

ERROR_LIMIT = 1000
RECENT_RUNS = 10


@dataclass
class ReportError(Exception):
    """A request refused: a machine-readable code, a sentence, an HTTP status, and the
    bound form when the parameters were at fault (for the page to show its errors)."""

    code: str
    message: str
    status: int = 422
    form: Any = None
    retry_after: int | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


# --- Requesting ------------------------------------------------------------------------


def fingerprint(kind: str, parameters: Mapping[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "parameters": parameters}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_parameters(kind_name: Any, data: Mapping[str, Any]) -> tuple[kinds.Kind, dict[str, Any]]:
    kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        names = ", ".join(k.name for k in kinds.all_kinds())
        raise ReportError("unknown_kind", f"There is no report kind {kind_name!r}; choose one of: {names}.")
    form = kind.form(data)
    if not form.is_valid():
        errors = {name: [str(e) for e in errs] for name, errs in form.errors.items()}
        first_field, messages = next(iter(errors.items()))
        prefix = "" if first_field == "__all__" else f"{form.fields[first_field].label}: "
        raise ReportError("invalid_parameters", f"{prefix}{messages[0]}", form=form, errors=errors)
    return kind, form.parameters()


def _lock_owner(owner: AbstractBaseUser | None, api_key: ApiKey | None) -> None:
    # Serialises one owner's requests (PostgreSQL row lock; SQLite's IMMEDIATE
    # transactions serialise every writer anyway), so two quick clicks cannot both pass
    # the duplicate check and the limit.
    if owner is not None:
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    else:
        ApiKey.objects.select_for_update().filter(pk=api_key.pk).first()


def request_report(
    kind_name: Any,
    data: Mapping[str, Any],
    *,
    owner: AbstractBaseUser | None = None,
    api_key: ApiKey | None = None,
) -> tuple[Report, bool]:
    """Create a report and its job (one transaction: the outbox), or return the
    identical one still queued or running. Returns (report, created).

    Raises `ReportError` for bad parameters (nothing is written) and when the owner
    already has `BUZZER_REPORTS_PER_USER` reports queued or running.
    """
    if (owner is None) == (api_key is None):
        raise ValueError("A report is owned by a user or by an API key")
    kind, parameters = validate_parameters(kind_name, data)
    key = fingerprint(kind.name, parameters)
    mine = {"owner": owner} if owner is not None else {"api_key": api_key}
    with transaction.atomic():
        _lock_owner(owner, api_key)
        active = Report.objects.filter(status__in=Report.ACTIVE, **mine)
        same = active.filter(kind=kind.name, fingerprint=key).order_by("created_at").first()
        if same is not None:
            return same, False
        limit = settings.BUZZER_REPORTS_PER_USER
        if active.count() >= limit:
            raise ReportError(
                "too_many_reports",
                f"You already have {limit} reports queued or running. "
                "Wait for one to finish, or cancel one, then ask again.",
                status=429,
                retry_after=_retry_after(active),
            )
        report = Report.objects.create(kind=kind.name, parameters=parameters, fingerprint=key, **mine)
        jobs.enqueue("generate_report", str(report.id), obj=report, key=f"report:generate:{report.id}")
    logger.info("Report %s (%s) requested", report.id, kind.name)
    return report, True


def _retry_after(active: Any) -> int:
    etas = [eta_seconds(report) for report in active]
    known = [eta for eta in etas if eta is not None]
    return int(min(max(min(known), 5), 600)) if known else 30


def cancel_report(report: Report, by: Any = None) -> bool:
    """Cancel a queued or running report, and its job with it (`jobs.cancel`): a queued
    one never runs, a running one stops at its next checkpoint (it sees the status, or
    its job's cancellation) and removes its partial file; the job ends `cancelled`."""
    with transaction.atomic():
        cancelled = Report.objects.filter(pk=report.pk, status__in=Report.ACTIVE).update(
            status=Report.Status.CANCELLED, finished_at=timezone.now()
        )
        if not cancelled:
            return False
        for job in jobs_of(report):
            try:
                jobs.cancel(job, by=by, reason=f"report {report.pk} cancelled")
            except jobs.CancelUnavailable:
                # Its job then stops by itself: it finds the report cancelled.
                logger.warning("Report %s cancelled; its job %s will find out when it starts", report.pk, job.pk)
    logger.info("Report %s cancelled", report.pk)
    return True


def jobs_of(report: Report) -> QuerySet[Any]:
    """The jobs that generate this report and have not finished."""
    from jobs.models import Job
    from jobs.services import jobs_for

    return jobs_for(report).filter(actor_name="generate_report", status__in=Job.CANCELLABLE)


# --- Generating ------------------------------------------------------------------------


class _Cancelled(Exception):
    pass


class _Checkpoints:
    """Progress writes, throttled: at most one every BUZZER_REPORT_PROGRESS_SECONDS.

    Each write is a conditional update on `running`, so it is also the cancellation
    check: 0 rows updated means somebody cancelled the report meanwhile.

    The writes go through a thread of their own, on its own database connection: on
    SQLite the connection that streams the rows holds a read snapshot, and once any other
    connection commits (the job tracker does, all the time) a write on the streaming
    connection fails at once with "database is locked" (a stale snapshot cannot become a
    writer). A caller inside a transaction (the tests) writes inline: another connection
    could not even see its uncommitted report.
    """

    def __init__(self, report_id: Any, total: int) -> None:
        self.report_id = report_id
        self.total = total
        self.interval = settings.BUZZER_REPORT_PROGRESS_SECONDS
        self.delay = settings.BUZZER_REPORT_CHUNK_DELAY_MS / 1000
        self.last = time.monotonic()
        self._pool = None if connection.in_atomic_block else ThreadPoolExecutor(1, "report-progress")

    def reached(self, done: int) -> None:
        if self.delay:
            time.sleep(self.delay)  # test-only slowness, to watch progress and cancel
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        progress = min(99, done * 100 // self.total) if self.total else 0
        if jobs.cancel_requested() or not self._run(self._write, progress, done):
            raise _Cancelled

    def _write(self, progress: int, done: int) -> int:
        return Report.objects.filter(pk=self.report_id, status=Report.Status.RUNNING).update(
            progress=progress, rows_done=done
        )

    def _run(self, fn: Any, *args: Any) -> Any:
        return fn(*args) if self._pool is None else self._pool.submit(fn, *args).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.submit(connections.close_all).result()  # that thread's connection only
            self._pool.shutdown()


class _TemporaryFile(File):
    """A finished CSV on local disk: FileSystemStorage moves it instead of copying."""

    def temporary_file_path(self) -> str:
        return self.name


def generate_report(report_id: str) -> None:
    """Generate the report's file (see the module docstring for failures). A report
    that is finished (succeeded, failed, cancelled, expired) is left alone."""
    report = Report.objects.filter(pk=report_id).first()
    if report is None:
        logger.warning("Report %s no longer exists; nothing to do", report_id)
        return
    if report.status == Report.Status.CANCELLED:
        raise jobs.Cancelled(f"Report {report.pk} was cancelled.")  # its job ends cancelled too
    if report.is_finished:
        logger.info("Report %s is already %s; nothing to do", report.pk, report.status)
        return
    # The claim: queued (or running, when the worker that ran it died) → running.
    claimed = Report.objects.filter(pk=report.pk, status__in=Report.ACTIVE).update(
        status=Report.Status.RUNNING,
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
        progress=0,
        rows_done=0,
    )
    if not claimed:
        return
    report.refresh_from_db()
    try:
        kind = kinds.get(report.kind)
        if kind is None:
            raise jobs.PermanentError(f"Unknown report kind {report.kind!r}")
        _write(report, kind)
    except _Cancelled:
        Report.objects.filter(pk=report.pk, status__in=Report.ACTIVE).update(
            status=Report.Status.CANCELLED, finished_at=timezone.now()
        )
        logger.info("Report %s was cancelled while it ran; partial file removed", report.pk)
        raise jobs.Cancelled(f"Report {report.pk} was cancelled while it ran.") from None
    except BaseException as exc:  # noqa: BLE001 - time limits are BaseException; always re-raised
        _failed(report, exc)


def _write(report: Report, kind: kinds.Kind) -> None:
    started = time.monotonic()
    queryset = kind.query(report.parameters)
    total = queryset.count()
    Report.objects.filter(pk=report.pk, status=Report.Status.RUNNING).update(total_rows=total)
    checkpoints = _Checkpoints(report.pk, total)
    chunk = settings.BUZZER_REPORT_CHUNK_SIZE
    stored = ""
    # Written to local disk as the rows stream in (memory stays flat), then handed to
    # the storage in one piece, so the storage never holds a half-written report.
    descriptor, path = tempfile.mkstemp(prefix="report-", suffix=".csv")
    stream = queryset.iterator(chunk_size=chunk)
    try:
        with open(descriptor, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(kind.columns)
            done = 0
            for rows in _chunks(stream, chunk):
                writer.writerows(kind.convert(rows) if kind.convert else rows)
                done += len(rows)
                checkpoints.reached(done)
        size = os.path.getsize(path)
        name = report.file.field.generate_filename(report, kind.filename(report.parameters))
        with open(path, "rb") as content:
            stored = report.file.storage.save(name, _TemporaryFile(content, name=path))
        with transaction.atomic():  # the webhook event commits with the report's success, or neither does
            succeeded = Report.objects.filter(pk=report.pk, status=Report.Status.RUNNING).update(
                status=Report.Status.SUCCEEDED,
                file=stored,
                row_count=done,
                rows_done=done,
                file_size=size,
                progress=100,
                finished_at=timezone.now(),
                duration_ms=int((time.monotonic() - started) * 1000),
                error="",
            )
            if succeeded:
                jobs.publish("report.succeeded", obj=report, report_id=str(report.pk))
        if not succeeded:
            raise _Cancelled
        logger.info("Report %s: %d rows, %d bytes in %.1f s", report.pk, done, size, time.monotonic() - started)
    except BaseException:
        if stored:
            report.file.storage.delete(stored)
        raise
    finally:
        # Close the database cursor now, not when the traceback lets go of it: a cursor
        # left open would make the failure's status update the stale-snapshot writer.
        stream.close()
        checkpoints.close()
        if os.path.exists(path):  # moved into the storage when it succeeded
            os.unlink(path)


def _chunks(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(islice(rows, size)):
        yield batch


def _failed(report: Report, exc: BaseException) -> None:
    """Record a failed attempt (the report waits again, with the reason) and re-raise for
    the job's retry policy; the job's death, if it comes, fails the report."""
    reason = f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]
    updated = Report.objects.filter(pk=report.pk, status=Report.Status.RUNNING).update(
        status=Report.Status.QUEUED, error=reason, progress=0, rows_done=0, finished_at=None
    )
    if not updated:  # cancelled meanwhile: nothing left to do or retry
        logger.info("Report %s failed after it was cancelled: %s", report.pk, reason)
        return
    logger.warning("Report %s attempt %d failed: %s", report.pk, report.attempts, reason)
    raise exc


def fail_for_dead_job(reports: QuerySet[Report], error: str) -> int:
    """The job of these reports is dead for good: each still waiting or running ends
    `failed` with the job's error (an `on_dead` hook; safe to run twice)."""
    reason = (error or "The report's job failed.")[:ERROR_LIMIT]
    failed = 0
    with transaction.atomic():
        for report in reports.filter(status__in=Report.ACTIVE).select_for_update():
            if Report.objects.filter(pk=report.pk, status__in=Report.ACTIVE).update(
                status=Report.Status.FAILED, error=reason, progress=0, rows_done=0, finished_at=timezone.now()
            ):
                failed += 1
                jobs.publish("report.failed", obj=report, report_id=str(report.pk))
    return failed


def cancel_for_cancelled_job(reports: QuerySet[Report]) -> int:
    """The job of these reports was cancelled (an `on_cancel` hook; safe to run twice)."""
    return reports.filter(status__in=Report.ACTIVE).update(status=Report.Status.CANCELLED, finished_at=timezone.now())


def requeue_for_retried_job(reports: QuerySet[Report]) -> int:
    """An operator retried the dead job of these reports: each failed one waits again
    (an `on_retry` hook, in the operator's transaction)."""
    return reports.filter(status=Report.Status.FAILED).update(
        status=Report.Status.QUEUED, error="", progress=0, rows_done=0, finished_at=None
    )


# --- Expiring --------------------------------------------------------------------------


def expire_reports() -> int:
    """Delete the files of reports finished more than BUZZER_REPORT_RETENTION_DAYS ago
    and mark them expired. Returns how many."""
    cutoff = timezone.now() - timedelta(days=settings.BUZZER_REPORT_RETENTION_DAYS)
    count = 0
    for report in Report.objects.filter(status=Report.Status.SUCCEEDED, finished_at__lt=cutoff).iterator():
        # Marked first: a user never gets a download link to a file that is gone. If the
        # delete then fails, an orphan file is left (logged), never a broken report.
        if not Report.objects.filter(pk=report.pk, status=Report.Status.SUCCEEDED).update(
            status=Report.Status.EXPIRED, file=""
        ):
            continue
        count += 1
        if report.file.name:
            try:
                report.file.storage.delete(report.file.name)
            except OSError:
                logger.exception("Could not delete the file %s of expired report %s", report.file.name, report.pk)
    if count:
        logger.info("Expired %d reports", count)
    return count


# --- Status ----------------------------------------------------------------------------


def queue_position(report: Report) -> int | None:
    """How many queued reports (of anybody) were requested before this one."""
    if report.status != Report.Status.QUEUED:
        return None
    return Report.objects.filter(status=Report.Status.QUEUED, created_at__lt=report.created_at).count()


def recent_duration(kind: str) -> float | None:
    """Median seconds of the last runs of this kind, or None without history."""
    durations = list(
        Report.objects.filter(kind=kind, status=Report.Status.SUCCEEDED, duration_ms__isnull=False)
        .order_by("-finished_at")
        .values_list("duration_ms", flat=True)[:RECENT_RUNS]
    )
    return statistics.median(durations) / 1000 if durations else None


def eta_seconds(report: Report, position: int | None = None) -> float | None:
    """A rough estimate: from the progress so far once it is running, else from the
    recent run times of its kind (times the reports ahead of it while it waits)."""
    if report.status == Report.Status.RUNNING and report.started_at:
        elapsed = (timezone.now() - report.started_at).total_seconds()
        if report.progress >= 5:
            return round(elapsed * (100 - report.progress) / report.progress, 1)
        typical = recent_duration(report.kind)
        return None if typical is None else round(max(typical - elapsed, 1.0), 1)
    if report.status == Report.Status.QUEUED:
        typical = recent_duration(report.kind)
        if typical is None:
            return None
        ahead = queue_position(report) if position is None else position
        return round(typical * (ahead + 1), 1)
    return None


MESSAGES = {
    Report.Status.QUEUED: "Waiting for a worker.",
    Report.Status.RUNNING: "Generating…",
    Report.Status.SUCCEEDED: "Ready to download.",
    Report.Status.FAILED: "The report could not be generated.",
    Report.Status.CANCELLED: "The report was cancelled.",
    Report.Status.EXPIRED: "The file was deleted after the retention period; request the report again.",
}

# The status in words, for people (the list, the status page).
STATUS_WORDS = {
    Report.Status.QUEUED: "waiting",
    Report.Status.RUNNING: "in progress",
    Report.Status.SUCCEEDED: "ready",
    Report.Status.FAILED: "failed",
    Report.Status.CANCELLED: "cancelled",
    Report.Status.EXPIRED: "expired",
}

# Why there is nothing to cancel, by the status the report already has.
NOTHING_TO_CANCEL = {
    Report.Status.SUCCEEDED: "The report is already finished: nothing to cancel.",
    Report.Status.FAILED: "The report already failed: nothing to cancel.",
    Report.Status.CANCELLED: "The report was already cancelled.",
    Report.Status.EXPIRED: "The report has already expired: nothing to cancel.",
}


def file_size_text(size: int | None) -> str:
    """The one formatter of a file's size, for the page and its live updates alike."""
    return "" if size is None else filesizeformat(size).replace("\xa0", " ")


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{max(round(seconds), 1)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def bar_state(report: Report) -> str:
    """How the progress bar shows: `waiting` (empty), `counting` (rows not known yet: an
    indeterminate bar), `progress`, `done`, or `none` (stopped: no bar at all)."""
    if report.status == Report.Status.QUEUED:
        return "waiting"
    if report.status == Report.Status.RUNNING:
        # Until the first rows are written there is nothing to fill the bar with.
        return "counting" if report.total_rows is None or not report.rows_done else "progress"
    return "done" if report.status == Report.Status.SUCCEEDED else "none"


def status_detail(report: Report, position: int | None, eta: float | None) -> str:
    """The line under the bar: the place in the queue, the rows so far, or the file."""
    left = f" About {duration_text(eta)} left." if eta is not None else ""
    if report.status == Report.Status.QUEUED:
        if not position:
            return "Next in line: it starts as soon as a worker is free."
        return f"{position} report{'s' if position != 1 else ''} ahead of this one.{left}"
    if report.status == Report.Status.RUNNING:
        if report.total_rows is None:
            return "Counting the rows…"
        if not report.rows_done:
            return f"Starting on about {report.total_rows:,} rows…"
        return f"{report.rows_done:,} of about {report.total_rows:,} rows.{left}"
    if report.status == Report.Status.SUCCEEDED and report.row_count is not None:
        rows = f"{report.row_count:,} row{'s' if report.row_count != 1 else ''}"
        return f"{rows}, {file_size_text(report.file_size)}."
    return ""


def status_document(report: Report, download_url: str | None) -> dict[str, Any]:
    """What the status page polls and the API answers."""
    position = queue_position(report)
    eta = eta_seconds(report, position)
    # A queued report next in line has no meaningful estimate (it waits for a worker).
    if report.status == Report.Status.QUEUED and not position:
        eta = None

    def stamp(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(report.id),
        "kind": report.kind,
        "parameters": report.parameters,
        "status": report.status,
        "finished": report.is_finished,
        "message": MESSAGES[report.status],
        "progress": report.progress,
        "rows_done": report.rows_done,
        "total_rows": report.total_rows,
        "queue_position": position,
        "eta_seconds": eta,
        "row_count": report.row_count,
        "file_size": report.file_size,
        "file_size_text": file_size_text(report.file_size),
        "status_text": STATUS_WORDS[report.status],
        "detail": status_detail(report, position, eta),
        "bar": bar_state(report),
        "error": report.error if report.status == Report.Status.FAILED else "",
        "download_url": download_url if report.status == Report.Status.SUCCEEDED else None,
        "created_at": stamp(report.created_at),
        "started_at": stamp(report.started_at),
        "finished_at": stamp(report.finished_at),
    }


def webhook_document(report_id: str) -> dict[str, Any] | None:
    """The `data` of a `report.succeeded` / `report.failed` webhook (None: the report is gone)."""
    from django.urls import reverse

    report = Report.objects.filter(pk=report_id).first()
    if report is None:
        return None
    return {
        "id": str(report.pk),
        "kind": report.kind,
        "parameters": report.parameters,
        "status": report.status,
        "error": report.error if report.status == Report.Status.FAILED else "",
        "status_url": settings.BUZZER_BASE_URL.rstrip("/") + reverse("reports:api-detail", args=[report.pk]),
    }
