"""The queue dashboard at /admin/jobs/dashboard/, hooked into the admin site's URLs
(jobs/admin.py keeps the model admins; this page belongs to no model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from jobs import charts, monitoring
from jobs import queues as queue_control
from jobs.alerts import open_alerts
from jobs.models import Job

logger = logging.getLogger(__name__)


def dashboard_view(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {**admin.site.each_context(request), "title": "Queue dashboard"}
    try:
        client, namespace = monitoring.redis_connection()
        snapshot = monitoring.snapshot(client, namespace)
    except redis.RedisError as exc:
        logger.warning("Queue dashboard: Redis unavailable (%s)", exc)
        context["refresh_seconds"] = 10
        return TemplateResponse(request, "admin/jobs/dashboard_unavailable.html", context, status=503)
    queues = list(settings.BUZZER_QUEUES)
    busy_rows, busy_more = busy(snapshot.workers)
    context.update(
        snapshot=snapshot,
        alerts=open_alerts(),
        charts=charts.with_current_depths(charts.build_charts(queues), {q.name: q.depth for q in snapshot.queues}),
        busy=busy_rows,
        busy_more=busy_more,
        paused=queue_control.paused_queues(client, namespace),
        can_pause=request.user.has_perm("jobs.pause_queue"),
        busy_limit=BUSY_LIMIT,
        refresh_seconds=10,
    )
    return TemplateResponse(request, "admin/jobs/dashboard.html", context)


@require_POST
def pause_view(request: HttpRequest, queue_name: str) -> HttpResponse:
    """Pause (paused=1) or resume (paused=0) a queue: POST, permission jobs.pause_queue."""
    if not request.user.has_perm("jobs.pause_queue"):
        raise PermissionDenied
    pause = request.POST.get("paused") == "1"
    try:
        changed = queue_control.set_paused(queue_name, pause, user=request.user)
    except queue_control.UnknownQueue as exc:
        raise Http404(str(exc)) from None
    except redis.RedisError:
        messages.error(request, "Redis is not answering: the queue was left as it was.")
        return HttpResponseRedirect(reverse("admin:jobs_dashboard"))
    state = "paused" if pause else "resumed"
    if changed:
        messages.success(request, f"Queue {queue_name} {state}.")
    else:
        messages.info(request, f"Queue {queue_name} was already {state}.")
    return HttpResponseRedirect(reverse("admin:jobs_dashboard"))


# The longest-running jobs the Busy table lists; the rest are a link to the job list.
BUSY_LIMIT = 50


@dataclass
class Busy:
    """What one worker process runs now (Sidekiq's Busy tab): its running jobs, oldest first."""

    worker: monitoring.WorkerBeat | None
    worker_id: str
    jobs: list[Job]


def busy(workers: list[monitoring.WorkerBeat]) -> tuple[list[Busy], bool]:
    """The running jobs (as their rows say, the BUSY_LIMIT longest-running), by worker
    process: the live workers first, each with what it runs, then any worker that is
    silent or gone; and whether more jobs are running than are listed."""
    running = list(
        Job.objects.filter(status=Job.Status.RUNNING)
        .only("id", "actor_name", "queue_name", "worker", "started_at", "attempts", "status")
        .order_by("started_at")[: BUSY_LIMIT + 1]
    )
    more = len(running) > BUSY_LIMIT
    running = running[:BUSY_LIMIT]
    by_worker: dict[str, list[Job]] = {}
    for job in running:
        by_worker.setdefault(job.worker, []).append(job)
    known = {w.broker_id: w for w in workers}
    rows = [Busy(w, w.broker_id, by_worker.pop(w.broker_id, [])) for w in workers if w.alive]
    rows += [Busy(known.get(worker_id), worker_id, jobs) for worker_id, jobs in by_worker.items()]
    return rows, more


def install(site: admin.AdminSite) -> None:
    """Put the dashboard before the site's own URLs (called once, from JobsConfig.ready)."""
    if getattr(site, "_buzzer_dashboard", False):
        return
    site_urls = site.get_urls

    def get_urls() -> list[Any]:
        return [
            path("jobs/dashboard/", site.admin_view(dashboard_view), name="jobs_dashboard"),
            path("jobs/dashboard/queue/<path:queue_name>/", site.admin_view(pause_view), name="jobs_queue_pause"),
            *site_urls(),
        ]

    site.get_urls = get_urls  # type: ignore[method-assign]
    site._buzzer_dashboard = True  # type: ignore[attr-defined]
