"""A safety net for requests that need Redis while it is down or stalled.

Views that read Redis handle its errors themselves where they can say more (/healthz,
/metrics, the dashboard). Anything else that reaches Redis and fails answers 503 with a
sentence and a Retry-After, as JSON for the API and as a short page otherwise, instead
of a 500 page. Placing an order never gets here: it only writes the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.http import HttpRequest, HttpResponse, JsonResponse
from dramatiq.errors import ConnectionError as BrokerConnectionError

logger = logging.getLogger(__name__)

MESSAGE = "The job queue (Redis) is not answering right now; nothing was lost. Please try again in a few seconds."


class BrokerUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (redis.RedisError, BrokerConnectionError)):
            return None
        logger.warning("%s %s: Redis unavailable: %s", request.method, request.path, exception)
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            response: HttpResponse = JsonResponse(
                {"error": {"code": "queue_unavailable", "message": MESSAGE}}, status=503
            )
        else:
            response = HttpResponse(
                "<!doctype html><title>Temporarily unavailable</title>"
                f"<h1>Temporarily unavailable</h1><p>{MESSAGE}</p>",
                status=503,
                content_type="text/html; charset=utf-8",
            )
        response["Retry-After"] = "5"
        response["Cache-Control"] = "no-store"
        return response
