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
import time
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


class RequestIdMiddleware:
    """Gives every request an id (its `X-Request-ID` if it brings a plain one, else a new
    one), binds it to the request's log lines and to the jobs it enqueues, returns it in
    the response's `X-Request-ID`, and logs one line per request (method, path, status,
    duration)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from config import logging as buzzer_logging

        request_id = buzzer_logging.new_request_id(request.headers.get("X-Request-ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        buzzer_logging.bind(request_id=request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            access_logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return response
        finally:
            buzzer_logging.unbind("request_id")


access_logger = logging.getLogger("buzzer.requests")


class ApiNotFoundMiddleware:
    """A 404 under /api/ answers JSON with DEBUG on too, as in production.

    With DEBUG on Django answers an unmatched path with its HTML debug page and never
    calls `handler404` (orders.api.not_found); API clients written against `make run`
    would then meet a page production never sends. A non-JSON 404 under /api/ is answered
    by that same handler instead. Placed after CommonMiddleware, which still sees the 404
    and redirects `/api/orders` to `/api/orders/` as before."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            from django.http import Http404
            from django.urls import get_resolver

            handler = get_resolver(getattr(request, "urlconf", None)).resolve_error_handler(404)
            return handler(request, exception=Http404(request.path))
        return response
