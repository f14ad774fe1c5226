"""Number and time formats for the queue dashboard."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import reverse

from jobs import timefmt
from jobs.models import Alert

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    """A duration for people: 850 µs, 12 ms, 3.4 s, 7 min, 2.5 h."""
    if value is None:
        return "–"
    if value < 0.001:
        return f"{value * 1_000_000:.0f} µs"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


@register.filter
def percent(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f} %"


@register.filter
def ago(value: Any) -> str:
    """ "3 minutes ago", the moment on hover (jobs.timefmt)."""
    return timefmt.ago(value)


@register.filter
def moment(value: Any) -> str:
    """The moment to the second, how long ago on hover (jobs.timefmt)."""
    return timefmt.moment(value)


@register.filter
def alert_link(alert: Alert) -> str:
    """Where the operator acts on an alert: the dead letters, or the queue's waiting jobs."""
    if alert.kind == "dlq_growing":
        return reverse("admin:jobs_job_dead_letters")
    query = urlencode({"queue": alert.queue_name, "status__exact": "enqueued"} if alert.queue_name else {})
    return f"{reverse('admin:jobs_job_changelist')}?{query}"
