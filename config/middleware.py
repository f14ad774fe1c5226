"""A safety net for requests that need Redis or the database while it is down, stalled
or out of connections.

Views that read Redis handle its errors themselves where they can say more (/healthz,
/metrics, the dashboard). Anything else that reaches Redis and fails answers 503 with a
sentence and a Retry-After, as JSON for the API and as a short page otherwise, instead
of a 500 page. Placing an order never gets here for Redis (it only writes the outbox);
without the database nothing can be accepted, and the client is told to try again: an
order is charged only once its rows can be written, and refunded if the write fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.http import HttpRequest, HttpResponse, JsonResponse
from dramatiq.errors import BrokerConnectionError

from jobs.infra import is_database_unavailable

logger = logging.getLogger(__name__)

MESSAGE = "The job queue (Redis) is not answering right now; nothing was lost. Please try again in a few seconds."
DATABASE_MESSAGE = (
    "The database is not answering right now; nothing was saved or charged. Please try again in a few seconds."
)


class BrokerUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_unavailable(exception):
            code, message = "database_unavailable", DATABASE_MESSAGE
        elif isinstance(exception, (redis.RedisError, BrokerConnectionError)):
            code, message = "queue_unavailable", MESSAGE
        else:
            return None
        logger.warning("%s %s: %s: %s", request.method, request.path, code, exception)
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            response: HttpResponse = JsonResponse({"error": {"code": code, "message": message}}, status=503)
        else:
            response = HttpResponse(
                "<!doctype html><title>Temporarily unavailable</title>"
                f"<h1>Temporarily unavailable</h1><p>{message}</p>",
                status=503,
                content_type="text/html; charset=utf-8",
            )
        response["Retry-After"] = "5"
        response["Cache-Control"] = "no-store"
        return response
