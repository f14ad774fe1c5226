"""Report actors: thin, they take ids and call one service each; and the lifecycle hooks
by which a report follows its job (dead → the report failed, retried → queued again, cancelled → cancelled)."""

from typing import Any

import jobs
import webhooks
from reports import scheduled, services
from reports.models import Report

webhooks.event("report.succeeded", document=services.webhook_document)
webhooks.event("report.failed", document=services.webhook_document)

GENERATE_MAX_RETRIES = 3
# Reports run for minutes (time limit 30 min) on workers of their own (`runworkers`'
# `reports` group): they never take the threads of an order's short jobs.
QUEUE = "reports"


@jobs.actor(
    max_retries=GENERATE_MAX_RETRIES, min_backoff=5_000, max_backoff=120_000, time_limit=1_800_000, queue_name=QUEUE
)
def generate_report(report_id: str) -> None:
    services.generate_report(report_id)


@jobs.periodic(seconds=3600)
@jobs.actor(max_retries=3, time_limit=300_000, queue_name=QUEUE)
def expire_reports() -> None:
    services.expire_reports()


@jobs.actor(
    max_retries=GENERATE_MAX_RETRIES, min_backoff=5_000, max_backoff=120_000, time_limit=1_800_000, queue_name=QUEUE
)
def run_scheduled_report(kind: str, parameters: dict, recipients: list, schedule: str) -> None:
    """Fired by a `jobs.Schedule`: make the report here and email it to the recipients."""
    scheduled.run_scheduled_report(kind, parameters, recipients, schedule)


def reports_of(job: Any) -> Any:
    """The reports a job generates: its argument, or (scheduled) the one it created."""
    if job.actor_name == "generate_report":
        report_id = job.kwargs.get("report_id") or (job.args[0] if job.args else None)
        return Report.objects.filter(pk=report_id)
    return Report.objects.filter(schedule__endswith=f"@{job.pk}")


@jobs.on_dead(generate_report)
@jobs.on_dead(run_scheduled_report)
def report_job_dead(job: Any) -> None:
    services.fail_for_dead_job(reports_of(job), job.last_error)


@jobs.on_cancel(generate_report)
@jobs.on_cancel(run_scheduled_report)
def report_job_cancelled(job: Any) -> None:
    services.cancel_for_cancelled_job(reports_of(job))


@jobs.on_retry(generate_report)
@jobs.on_retry(run_scheduled_report)
def report_job_retried(job: Any) -> None:
    services.requeue_for_retried_job(reports_of(job))
