"""The jobs backbone's tables: one row per job (the outbox and its tracking) and the
effects ledger."""

import uuid

from django.db import models
from django.utils import timezone


class Job(models.Model):
    """One unit of background work. Its id is the Dramatiq message id.

    Written in the same transaction as the business change that asks for it (the
    outbox), dispatched to Redis after commit, and kept true by the tracking
    middleware while it runs.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"  # written, not yet handed to the broker
        ENQUEUED = "enqueued", "enqueued"  # in Redis, waiting for a worker
        RUNNING = "running", "running"
        RETRYING = "retrying", "retrying"  # an attempt failed, another one is scheduled
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"  # finished unsuccessfully and kept out of the DLQ
        DEAD = "dead", "dead"  # out of retries or a permanent error: the dead-letter queue

    WAITING = (Status.PENDING, Status.ENQUEUED, Status.RETRYING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.DEAD)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor_name = models.CharField(max_length=200)
    queue_name = models.CharField(max_length=100, default="default")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    event = models.CharField(max_length=100, blank=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="job_created_idx"),
            models.Index(fields=["status", "created_at"], name="job_status_created_idx"),
            models.Index(fields=["object_type", "object_id"], name="job_object_idx"),
            models.Index(fields=["actor_name", "created_at"], name="job_actor_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Effect(models.Model):
    """The effects ledger: a side effect that happened, under a unique key, so that a
    retried or redelivered job does not repeat it."""

    key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key
