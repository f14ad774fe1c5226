"""A report: one requested file, generated on a worker, downloaded by its owner."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def report_path(report: Report, filename: str) -> str:
    # One directory per report: two reports of the same range never share a name.
    return f"reports/{report.id}/{filename}"


class Report(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        EXPIRED = "expired", "expired"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.EXPIRED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Requested through the pages (a user) or the JSON API (an API key, which is not a
    # user): exactly one of the two owns the report.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="reports"
    )
    api_key = models.ForeignKey(
        "orders.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="reports"
    )
    kind = models.CharField(max_length=32)
    parameters = models.JSONField(default=dict)
    # kind + canonical parameters, hashed: finds an identical report still in progress
    # without comparing JSON in SQL (whose equality differs between databases).
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    total_rows = models.PositiveIntegerField(null=True, blank=True, help_text="estimate, counted when it starts")
    attempts = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to=report_path, max_length=255, blank=True)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="time the last attempt took")
    error = models.TextField(blank=True)
    # Recurring reports: "<schedule name>@<job id>" of the fire that made it; NULL for a
    # report a person asked for.
    schedule = models.CharField(max_length=200, null=True, blank=True, db_index=True)  # noqa: DJ001
    recipients = models.JSONField(default=list, blank=True)  # scheduled reports are emailed to them
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="report_status_created"),
            models.Index(fields=["owner", "status"], name="report_owner_status"),
            models.Index(fields=["api_key", "status"], name="report_key_status"),
            models.Index(fields=["kind", "status", "finished_at"], name="report_kind_finished"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(owner__isnull=False, api_key__isnull=True) | Q(owner__isnull=True, api_key__isnull=False),
                name="report_owned_by_user_or_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} report {str(self.id)[:8]} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def owned_by(self) -> dict[str, Any]:
        """The filter that selects the reports of the same owner."""
        return {"owner_id": self.owner_id} if self.owner_id else {"api_key_id": self.api_key_id}
