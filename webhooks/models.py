"""Outbound webhooks: the endpoints that receive them, the events sent, and one
delivery per event and endpoint with every attempt it took."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Endpoint(models.Model):
    """A URL that receives signed events (Standard Webhooks)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # The event types it wants; empty: all of them.
    events = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, editable=False)
    # After a rotation the old secret signs too, until it expires.
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When its current run of failed attempts began (None: its last attempt succeeded).
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("reveal_secret", "Can see webhook endpoint secrets"),
            ("resend_delivery", "Can resend webhook deliveries"),
        ]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events

    def secrets(self, now: Any = None) -> list[str]:
        """The secrets that sign a delivery now: the current one, and the previous one
        during a rotation."""
        now = now or timezone.now()
        found = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            found.append(self.previous_secret)
        return found


class Event(models.Model):
    """Something that happened, as receivers get it: `{"type", "timestamp", "data"}`.
    Its id is the `webhook-id` header, the same for every attempt and every endpoint."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=100)
    data = models.JSONField(default=dict)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="webhook_event_object_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id}"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class Delivery(models.Model):
    """One event to one endpoint: its state, and its attempts below it."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"  # its next attempt is queued
        RETRYING = "retrying", "retrying"  # an attempt failed, the next one waits for `next_attempt_at`
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"  # out of attempts, 410 Gone, or its endpoint disabled

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once")]
        indexes = [
            models.Index(fields=["endpoint", "status", "created_at"], name="webhook_delivery_endpoint_idx"),
            models.Index(fields=["status", "-created_at"], name="webhook_delivery_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event.type} → {self.endpoint.url} ({self.status})"


class Attempt(models.Model):
    """One try at a delivery: when, what the receiver answered, how long it took."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    manual = models.BooleanField(default=False)  # a Resend, outside the retry schedule
    job_id = models.UUIDField(null=True, blank=True)
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    response = models.TextField(blank=True)  # the first 1 KB of the body
    address = models.CharField(max_length=64, blank=True)  # the IP connected to

    class Meta:
        ordering = ["delivery", "started_at"]
        indexes = [models.Index(fields=["delivery", "started_at"], name="webhook_attempt_delivery_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number}"


class Action(models.Model):
    """The audit log of webhooks: who did what to an endpoint or a delivery, and when
    (an automatic disable has no user)."""

    class Kind(models.TextChoices):
        CREATE = "create", "endpoint created"
        PAUSE = "pause", "endpoint paused"
        RESUME = "resume", "endpoint resumed"
        ROTATE = "rotate", "secret rotated"
        REVEAL = "reveal", "secret revealed"
        TEST = "test", "test event sent"
        RESEND = "resend", "delivery resent"
        DISABLE = "disable", "endpoint disabled"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    endpoint = models.ForeignKey(Endpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions")
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    detail = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.at:%Y-%m-%d %H:%M}"
