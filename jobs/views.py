"""/healthz and /metrics: thin views over jobs.health and jobs.metrics."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from jobs import health, metrics

logger = logging.getLogger(__name__)


def _presented_token(request: HttpRequest) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.GET.get("token", "")


def monitoring_token_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Open without BUZZER_MONITORING_TOKEN; with it, the token must come as a Bearer
    header or `?token=` (for scrapers that cannot send headers)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        expected = settings.BUZZER_MONITORING_TOKEN
        if expected and not hmac.compare_digest(_presented_token(request).encode(), expected.encode()):
            response = JsonResponse({"error": {"code": "unauthorized", "message": "A valid token is required."}})
            response.status_code = 401
            response["WWW-Authenticate"] = 'Bearer realm="monitoring"'
            return response
        return view(request, *args, **kwargs)

    return wrapped


@require_safe
@never_cache
@monitoring_token_required
def healthz(request: HttpRequest) -> JsonResponse:
    report, healthy = health.check_health()
    return JsonResponse(report, status=200 if healthy else 503)


@require_safe
@never_cache
@monitoring_token_required
def metrics_view(request: HttpRequest) -> HttpResponse:
    try:
        figures = metrics.read_figures()
    except (redis.RedisError, DatabaseError) as exc:
        logger.warning("Metrics unavailable: %s", exc)
        return HttpResponse(
            "# metrics unavailable: Redis or the database does not answer\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(metrics.render(figures), content_type=CONTENT_TYPE_LATEST)
