"""The JSON API: `POST /api/orders/` and `GET /api/orders/<id>/`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found

from limits.responses import json_too_many_requests
from limits.services import api_orders_limited
from orders import idempotency
from orders.errors import ApiKeyExpired, OrderError
from orders.models import ApiKey, Order
from orders.serializers import order_document
from orders.services import authenticate_api_key, place_order

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def error(status: int, code: str, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def authenticate(request: HttpRequest) -> ApiKey | None:
    """The request's API key, None without a valid one (raises ApiKeyExpired)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return authenticate_api_key(token.strip())


def api_view(*methods: str) -> Callable[[Callable[..., JsonResponse]], Callable[..., JsonResponse]]:
    """JSON errors for the method and authentication; the view gets the API key."""

    def decorate(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                return error(405, "method_not_allowed", f"Use {' or '.join(methods)} here.", Allow=", ".join(methods))
            try:
                api_key = authenticate(request)
            except ApiKeyExpired as exc:
                return error(exc.status, exc.code, exc.message, WWW_Authenticate="Bearer")
            if api_key is None:
                return error(
                    401,
                    "unauthorized",
                    "A valid API key is required: Authorization: Bearer <key>.",
                    WWW_Authenticate="Bearer",
                )
            return view(request, api_key, *args, **kwargs)

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        wrapped.api_methods = methods  # type: ignore[attr-defined]  # read by the OpenAPI tests
        return csrf_exempt(wrapped)

    return decorate


def read_json(request: HttpRequest, limit: int = MAX_BODY_BYTES) -> tuple[Any, JsonResponse | None]:
    """The body as a JSON object, or the JSON error response to send instead."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None, error(413, "body_too_large", f"The body may be at most {limit} bytes.")
    content_type = request.content_type or ""
    if content_type != "application/json":
        return None, error(415, "unsupported_media_type", "Send the body as application/json.")
    body = request.read(limit + 1)
    if len(body) > limit:
        return None, error(413, "body_too_large", f"The body may be at most {limit} bytes.")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, error(400, "malformed_json", "The body is not valid JSON.")
    except RecursionError:  # `[[[[…` nested deeper than the parser goes fits in a small body
        return None, error(400, "malformed_json", "The body is nested too deeply.")
    if not isinstance(data, dict):
        return None, error(400, "malformed_json", "The body must be a JSON object.")
    return data, None


@api_view("POST")
def create_order(request: HttpRequest, api_key: ApiKey) -> JsonResponse:
    limited = api_orders_limited(request, api_key.pk)
    if limited is not None:
        return json_too_many_requests(limited)
    data, problem = read_json(request)
    if problem is not None:
        return problem
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return _place(data, api_key, None)
    if not key.strip() or len(key) > idempotency.MAX_KEY_LENGTH or "\x00" in key:
        return error(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 characters.")
    begun = idempotency.begin(api_key, key, idempotency.fingerprint(data))
    if begun.conflict == "mismatch":
        return error(422, "idempotency_key_reused", "This Idempotency-Key was used with a different request body.")
    if begun.conflict == "in_progress":
        return error(
            409,
            "idempotency_key_in_progress",
            "A request with this Idempotency-Key is still being processed.",
            Retry_After="1",
        )
    if begun.replay is not None:
        response = JsonResponse(begun.replay.response_body, status=begun.replay.response_status, safe=False)
        response["Idempotent-Replayed"] = "true"
        if begun.replay.response_status == 201:
            response["Location"] = f"/api/orders/{begun.replay.response_body['id']}/"
        return response
    try:
        return _place(data, api_key, begun.record)
    except BaseException:
        idempotency.abandon(begun.record)
        raise


def _place(data: dict[str, Any], api_key: ApiKey, record: Any) -> JsonResponse:
    created: dict[str, Any] = {}

    def snapshot(order: Order, items: list[Any], jobs: list[Any]) -> None:
        # The response is the order as committed, so that a replay returns the same body.
        created["body"] = order_document(order, items, jobs)
        if record is not None:
            idempotency.finish(record, 201, created["body"])

    try:
        order = place_order(
            email=data.get("email"),
            items=data.get("items"),
            card=data.get("card"),
            priority=data.get("priority", Order.Priority.STANDARD),
            api_key=api_key,
            on_created=snapshot,
        )
    except OrderError as exc:
        body = {"error": {"code": exc.code, "message": exc.message}}
        if record is not None:
            idempotency.finish(record, exc.status, body)
        return JsonResponse(body, status=exc.status)
    response = JsonResponse(created["body"], status=201)
    response["Location"] = f"/api/orders/{order.id}/"
    return response


@api_view("GET")
def order_detail(request: HttpRequest, api_key: ApiKey, order_id: Any) -> JsonResponse:
    order = Order.objects.filter(pk=order_id, api_key=api_key).first()
    if order is None:
        return error(404, "not_found", "There is no such order.")
    return JsonResponse(order_document(order))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: under /api/ a JSON error like every other API answer (an id that is
    not a UUID matches no route), elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return error(404, "not_found", "There is no such resource.")
    return page_not_found(request, exception)
