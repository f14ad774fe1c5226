"""The 429 answer: JSON in the API's error shape under /api/, a short page elsewhere;
both say when to come back (Retry-After, in seconds)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from limits.services import Limited

MESSAGES = {
    "login_username": "Too many failed log-ins for this username. Please try again in {wait}.",
    "login_ip": "Too many failed log-ins from your network. Please try again in {wait}.",
    "api_orders": "This API key placed too many orders in a short time. Please try again in {wait}.",
    "checkout_session": "Too many orders from this browser in a short time. Please try again in {wait}.",
    "checkout_ip": "Too many orders from your network in a short time. Please try again in {wait}.",
}


def message(limited: Limited) -> str:
    template = MESSAGES.get(limited.scope, "Too many requests. Please try again in {wait}.")
    return template.format(wait=_wait(limited.retry_after))


def _wait(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{(seconds + 59) // 60} minutes"


def json_too_many_requests(limited: Limited) -> JsonResponse:
    response = JsonResponse({"error": {"code": "rate_limited", "message": message(limited)}}, status=429)
    response["Retry-After"] = str(limited.retry_after)
    return response


def too_many_requests(request: HttpRequest, limited: Limited) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_too_many_requests(limited)
    response = render(request, "429.html", {"message": message(limited)}, status=429)
    response["Retry-After"] = str(limited.retry_after)
    response["Cache-Control"] = "no-store"
    return response
