"""The queue dashboard at /admin/jobs/dashboard/, hooked into the admin site's URLs
(jobs/admin.py keeps the model admins; this page belongs to no model)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from jobs import charts, monitoring
from jobs.alerts import open_alerts

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
    context.update(
        snapshot=snapshot,
        alerts=open_alerts(),
        charts=charts.build_charts(queues),
        refresh_seconds=10,
    )
    return TemplateResponse(request, "admin/jobs/dashboard.html", context)


def install(site: admin.AdminSite) -> None:
    """Put the dashboard before the site's own URLs (called once, from JobsConfig.ready)."""
    if getattr(site, "_buzzer_dashboard", False):
        return
    site_urls = site.get_urls

    def get_urls() -> list[Any]:
        return [path("jobs/dashboard/", site.admin_view(dashboard_view), name="jobs_dashboard"), *site_urls()]

    site.get_urls = get_urls  # type: ignore[method-assign]
    site._buzzer_dashboard = True  # type: ignore[attr-defined]
