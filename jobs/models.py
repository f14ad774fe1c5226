"""The jobs backbone's tables: one row per job (the outbox and its tracking) and the
effects ledger."""

import uuid
from typing import Any

from django.conf import settings
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
        SCHEDULED = "scheduled", "scheduled"  # a delayed job: written, handed to the broker at `due_at`
        ENQUEUED = "enqueued", "enqueued"  # in Redis, waiting for a worker
        RUNNING = "running", "running"
        RETRYING = "retrying", "retrying"  # an attempt failed, another one is scheduled
        SUCCEEDED = "succeeded", "succeeded"
        DEAD = "dead", "dead"  # out of retries, a permanent error or a crash loop: the DLQ
        DISCARDED = "discarded", "discarded"  # taken out of the DLQ by an operator, with a reason
        CANCELLED = "cancelled", "cancelled"  # cancelled before or while it ran (jobs.cancel)

    WAITING = (Status.PENDING, Status.SCHEDULED, Status.ENQUEUED, Status.RETRYING)
    FINISHED = (Status.SUCCEEDED, Status.DEAD, Status.DISCARDED, Status.CANCELLED)
    CANCELLABLE = (*WAITING, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor_name = models.CharField(max_length=200)
    queue_name = models.CharField(max_length=100, default="default")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Which failures are the same failure (jobs/fingerprints.py), written with last_error.
    error_fingerprint = models.CharField(max_length=40, blank=True, default="", db_default="")
    traceback = models.TextField(blank=True)
    key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    event = models.CharField(max_length=100, blank=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=64, blank=True)
    # Redis' own id of the delivery that died, to take it out of Dramatiq's dead-letter set.
    broker_message_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(null=True, blank=True)  # a delayed job runs at (not before) this time
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="job_created_idx"),
            # A status filter's page and its capped count, also with an actor or a queue:
            # the other two columns are checked in the index, no row read (migration 0005).
            models.Index(fields=["status", "-created_at", "actor_name", "queue_name"], name="job_status_list_idx"),
            # A job's object (`jobs_for`, a schedule's runs: object_id is the selective
            # part) and the search's object ids (jobs/search.py). One index for both: each
            # index is one more B-tree to write per insert (migration 0009).
            models.Index(fields=["object_id"], name="job_object_id_idx"),
            models.Index(fields=["actor_name", "-created_at"], name="job_actor_created_idx"),
            models.Index(fields=["queue_name", "-created_at"], name="job_queue_created_idx"),
            models.Index(fields=["status", "finished_at"], name="job_status_finished_idx"),
            models.Index(fields=["status", "due_at"], name="job_status_due_idx"),
            # Dead letters by fingerprint (count, first and last seen) and dead jobs per
            # queue (the dashboard) without reading a row. Partial: only dead rows are in
            # it, so inserting a job and its status changes until then never touch it.
            models.Index(
                # status first though it is constant here: SQLite, which has no
                # statistics, picks an index by its equality terms (status = 'dead').
                fields=["status", "error_fingerprint", "finished_at", "queue_name"],
                name="job_dead_groups_idx",
                condition=models.Q(status="dead"),
            ),
            # One error group's jobs in the list (status dead + fingerprint, newest first)
            # without walking every dead row. Partial: only dead rows are in it, so the
            # status changes of every other job never touch it.
            models.Index(
                fields=["error_fingerprint", "-created_at"],
                name="job_dead_fingerprint_idx",
                condition=models.Q(status="dead"),
            ),
        ]
        permissions = [
            ("retry_job", "Can retry dead jobs"),
            ("discard_job", "Can discard dead jobs"),
            ("cancel_job", "Can cancel waiting and running jobs"),
            ("requeue_job", "Can requeue stalled and lost jobs now"),
            ("pause_queue", "Can pause and resume queues"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.last_error:  # the batch writer and bulk inserts set it themselves
            from jobs.fingerprints import fingerprint

            self.error_fingerprint = fingerprint(self.actor_name, self.last_error)
        super().save(*args, **kwargs)

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class JobValue(models.Model):
    """The search index of job arguments: one row per scalar value (string or number,
    1-200 characters, lower-cased) among a job's top-level args and kwargs, and its
    object id, except a lower-case object id and the values equal to it (the job table's
    object_id index finds those; migration 0009).

    Written and deleted by database triggers on the job table (migration 0004), never by
    Django: enqueueing a job issues no statement for it. Read by the admin's search, on
    SQLite only: PostgreSQL keeps the same values in a GIN expression index of the job
    table instead (migration 0005), and this table stays empty there.
    """

    pk = models.CompositePrimaryKey("job_id", "value")
    job_id = models.UUIDField()
    value = models.CharField(max_length=200)

    class Meta:
        indexes = [models.Index(fields=["value"], name="jobvalue_value_idx")]

    def __str__(self) -> str:
        return f"{self.job_id}: {self.value}"


class Effect(models.Model):
    """The effects ledger: a side effect that happened, under a unique key, so that a
    retried or redelivered job does not repeat it (see jobs/effects.py)."""

    class State(models.TextChoices):
        STARTED = "started", "started"  # an external effect under way
        DONE = "done", "done"

    key = models.CharField(max_length=255, unique=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.DONE)
    job_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class JobAttempt(models.Model):
    """A failed attempt of a job, with its error (a successful one is the Job row itself)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="failed_attempts")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Job.Status.choices)
    worker = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField()
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "number"]

    def __str__(self) -> str:
        return f"{self.job_id} attempt {self.number}"


class JobAction(models.Model):
    """The audit log: what an operator (or the recovery) did to a job or a schedule: who,
    when, why. Rows outlive what they name: pruning a finished job keeps its actions
    (the job's id stays in `job_ref`)."""

    class Kind(models.TextChoices):
        RETRY = "retry", "retried"
        DISCARD = "discard", "discarded"
        RECOVER = "recover", "recovered from a dead worker"
        CRASH_LOOP = "crash_loop", "dead-lettered after crashing its worker"
        RUN_NOW = "run_now", "schedule run now"
        PAUSE = "pause", "schedule paused"
        RESUME = "resume", "schedule resumed"
        CANCEL = "cancel", "cancelled"
        CANCEL_REQUESTED = "cancel_request", "cancellation requested (running)"
        REQUEUE = "requeue", "requeued now"
        QUEUE_PAUSE = "queue_pause", "queue paused"
        QUEUE_RESUME = "queue_resume", "queue resumed"

    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions")
    job_ref = models.UUIDField(null=True, blank=True, db_index=True)  # kept after the job is deleted
    subject = models.CharField(max_length=200, blank=True)  # what else it names, e.g. "schedule 3: nightly"
    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.job_ref or self.subject}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.job_id is not None and self.job_ref is None:
            self.job_ref = self.job_id
        super().save(*args, **kwargs)


class QueueSample(models.Model):
    """One reading of a queue's health, recorded by the scheduler every few seconds."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    queue_name = models.CharField(max_length=100)
    depth = models.PositiveIntegerField(default=0)
    delayed = models.PositiveIntegerField(default=0)
    in_flight = models.PositiveIntegerField(default=0)
    dead = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)  # jobs finished since the previous sample
    failed = models.PositiveIntegerField(default=0)
    workers = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["queue_name", "-at"], name="sample_queue_at_idx")]

    def __str__(self) -> str:
        return f"{self.queue_name} at {self.at:%H:%M:%S}"


class Alert(models.Model):
    """A condition an operator should look at (a queue rising, the DLQ growing)."""

    kind = models.CharField(max_length=32)
    queue_name = models.CharField(max_length=100, blank=True)
    message = models.TextField()
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    # The level the condition rose from (dead letters: the count before they grew): back at
    # it or below, the condition has cleared.
    baseline = models.IntegerField(null=True, blank=True)

    KINDS = {"queue_rising": "Queue rising", "dlq_growing": "Dead letters growing"}

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["closed_at", "kind", "queue_name"], name="alert_open_idx")]

    def __str__(self) -> str:
        return self.message

    @property
    def label(self) -> str:
        return self.KINDS.get(self.kind, self.kind.replace("_", " ").capitalize())


class Schedule(models.Model):
    """A recurring job: `runscheduler` enqueues `actor_name` with `kwargs` at every fire
    time of `cron`. Edited in the admin; edits apply without restarting the scheduler."""

    name = models.CharField(max_length=100, unique=True)
    actor_name = models.CharField(max_length=200)
    kwargs = models.JSONField(default=dict, blank=True)
    cron = models.CharField(
        max_length=100,
        help_text="Crontab: 'minute hour day month weekday' (e.g. '0 6 * * *'), "
        "or six fields with seconds first ('*/10 * * * * *').",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    enabled = models.BooleanField(default=True)
    # Declared after the timestamps: as a class attribute it hides the timezone module.
    timezone = models.CharField(max_length=64, default="UTC")

    class Meta:
        ordering = ["name"]
        permissions = [("run_schedule", "Can run a schedule now, pause and resume it")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from jobs.schedules import validate

        validate(self.cron, self.timezone)
