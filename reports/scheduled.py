"""Recurring reports: a `jobs.Schedule` row fires `run_scheduled_report`, which makes the
report on the worker and emails it to the schedule's recipients.

The job of one fire makes exactly one report (found again by the job's id if the job
runs twice) and sends its email once (the effects ledger). The email attaches the file
when it is small, and otherwise carries a signed link that works without an account for
as long as the file is kept.
"""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import EmailMessage
from django.urls import reverse
from django.utils import timezone

import jobs
from jobs.effects import current_job
from reports import services
from reports.models import Report

logger = logging.getLogger(__name__)

SYSTEM_USER = "scheduled-reports"
SIGNING_SALT = "reports.download"
_RELATIVE = re.compile(r"^(today|yesterday|-(\d+)d)$")


def resolve_dates(parameters: dict[str, Any], today: date) -> dict[str, Any]:
    """'today', 'yesterday' and '-7d' in a schedule's parameters become ISO dates."""
    resolved = {}
    for name, value in parameters.items():
        match = _RELATIVE.match(value) if isinstance(value, str) else None
        if match is None:
            resolved[name] = value
        elif match.group(1) == "today":
            resolved[name] = today.isoformat()
        elif match.group(1) == "yesterday":
            resolved[name] = (today - timedelta(days=1)).isoformat()
        else:
            resolved[name] = (today - timedelta(days=int(match.group(2)))).isoformat()
    return resolved


def system_user() -> Any:
    """Owns scheduled reports; it cannot log in."""
    user, created = get_user_model().objects.get_or_create(username=SYSTEM_USER, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def report_for_fire(kind: str, parameters: dict[str, Any], recipients: list[str], schedule: str) -> Report:
    """The report of the running job: created on its first run, found again after."""
    reference = f"{schedule}@{current_job() or 'manual'}"
    report = Report.objects.filter(schedule=reference).first()
    if report is not None:
        return report
    try:
        found, params = services.validate_parameters(kind, resolve_dates(parameters, timezone.localdate()))
    except services.ReportError as exc:  # the schedule row is wrong: retrying cannot help
        raise jobs.PermanentError(f"Schedule {schedule!r}: {exc.message}") from exc
    return Report.objects.create(
        owner=system_user(),
        kind=found.name,
        parameters=params,
        fingerprint=services.fingerprint(found.name, params),
        schedule=reference,
        recipients=list(recipients),
    )


def signed_download_url(report: Report) -> str:
    token = signing.dumps(str(report.pk), salt=SIGNING_SALT)
    path = reverse("reports:shared-download", args=[report.pk])
    return f"{settings.BUZZER_BASE_URL.rstrip('/')}{path}?token={token}"


def check_token(report: Report, token: str) -> bool:
    try:
        value = signing.loads(token, salt=SIGNING_SALT, max_age=timedelta(days=settings.BUZZER_REPORT_RETENTION_DAYS))
    except signing.BadSignature:
        return False
    return value == str(report.pk)


def email_report(report: Report) -> bool:
    """Send a finished scheduled report to its recipients, once."""
    if not report.recipients or report.status != Report.Status.SUCCEEDED:
        return False
    key = f"email:report:{report.pk}"
    message_id = jobs.message_id(key)
    with jobs.once(key, external=True, check=lambda: jobs.email_accepted(message_id)) as first:
        if not first:
            return False
        name = report.file.name.rsplit("/", 1)[-1]
        body = [
            f"The {report.kind} report of schedule {report.schedule.split('@')[0]} is ready: {report.row_count} rows.",
            "",
        ]
        message = EmailMessage(
            subject=f"Buzzer report: {name}", to=report.recipients, headers={"Message-ID": message_id}
        )
        if report.file_size is not None and report.file_size <= settings.BUZZER_REPORT_ATTACH_MAX_BYTES:
            with report.file.storage.open(report.file.name, "rb") as handle:
                message.attach(name, handle.read(), "text/csv")
            body.append("The file is attached.")
        else:
            days = settings.BUZZER_REPORT_RETENTION_DAYS
            body.append(f"Download it (the link works for {days} days): {signed_download_url(report)}")
        message.body = "\n".join(body)
        message.send()
    logger.info("Report %s emailed to %d recipients", report.pk, len(report.recipients))
    return True


def run_scheduled_report(kind: str, parameters: dict[str, Any], recipients: list[str], schedule: str) -> None:
    report = report_for_fire(kind, parameters, recipients, schedule)
    services.generate_report(str(report.pk))
    report.refresh_from_db()
    email_report(report)
