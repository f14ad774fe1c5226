"""The JSON API's OpenAPI 3.1 document, served at `GET /api/openapi.json`.

Built on each request from the settings and the report kinds it describes (item and
quantity limits, report kinds and their parameters), so that it cannot drift from them.
`tests/test_openapi.py` checks every route, method and status against the views, and
`tests/test_api_fuzz.py` fuzzes the views from it.

Request bodies leave `additionalProperties` open: the API ignores fields it does not
know (a client may send more than it needs). Response bodies close it: they are exactly
what the views write.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from jobs.models import Job
from orders.models import Order
from reports.models import Report

OPENAPI_VERSION = "3.1.0"
ERROR_CONTENT = "application/json"
DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "description": "A decimal amount, two places."}
DATE_TIME = {"type": "string", "format": "date-time"}
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"  # some visible character, and no NUL
IDEMPOTENCY_KEY = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NOT_BLANK}

# The machine-readable codes each operation can answer, by status. Kept exact by the tests.
# Every authenticated operation: no key, wrong method, and Redis or the database failing mid-request.
COMMON_CODES = {
    "401": ["unauthorized"],
    "405": ["method_not_allowed"],
    "503": ["queue_unavailable", "database_unavailable"],
}
BODY_CODES = {"400": ["malformed_json"], "413": ["body_too_large"], "415": ["unsupported_media_type"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _header(description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


HEADERS: dict[str, dict[str, Any]] = {
    "Location": _header("Where the created resource can be read.", {"type": "string", "pattern": "^/api/"}, True),
    "Retry-After": _header("Seconds to wait before asking again.", {"type": "string", "pattern": "^[0-9]+$"}, True),
    "WWW-Authenticate": _header("The authentication scheme to use.", {"type": "string", "enum": ["Bearer"]}, True),
    "Allow": _header("The methods this path answers.", {"type": "string", "pattern": "^[A-Z]+(, [A-Z]+)*$"}, True),
    "Idempotent-Replayed": _header(
        "Present when this is the stored response of an earlier request with the same Idempotency-Key.",
        {"type": "string", "enum": ["true"]},
    ),
    "Cache-Control": _header(
        "A report is its owner's business: never cached.", {"type": "string", "pattern": "no-store"}, True
    ),
}


def _error(description: str, codes: list[str], *, headers: dict[str, str] | None = None) -> dict[str, Any]:
    schema = {
        "allOf": [
            _ref("Error"),
            {"properties": {"error": {"properties": {"code": {"type": "string", "enum": sorted(set(codes))}}}}},
        ]
    }
    response: dict[str, Any] = {"description": description, "content": {ERROR_CONTENT: {"schema": schema}}}
    if headers:
        response["headers"] = {name: {"$ref": f"#/components/headers/{ref}"} for name, ref in headers.items()}
    return response


def _errors(codes: dict[str, list[str]]) -> dict[str, Any]:
    descriptions = {
        "400": "The body is not a JSON object, or a header is malformed.",
        "401": "No valid API key: missing, malformed, unknown or revoked.",
        "402": "The payment failed.",
        "404": "There is no such resource for this API key.",
        "405": "The method is not allowed on this path.",
        "409": "A conflict: not enough stock, or the same Idempotency-Key is still being processed.",
        "413": "The body is too large.",
        "415": "The body is not sent as application/json.",
        "422": "The request is well-formed but refused: the message says why.",
        "429": "Too many reports queued or running for this key.",
        "503": "The job queue (Redis) or the database did not answer during the request (config.middleware): "
        "nothing was lost, nothing charged twice; retry later (with the same Idempotency-Key).",
    }
    headers = {
        "401": {"WWW-Authenticate": "WWW-Authenticate"},
        "405": {"Allow": "Allow"},
        "429": {"Retry-After": "Retry-After"},
        "503": {"Retry-After": "Retry-After"},
    }
    return {status: _error(descriptions[status], names, headers=headers.get(status)) for status, names in codes.items()}


def _json(description: str, schema: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = {name: {"$ref": f"#/components/headers/{ref}"} for name, ref in headers.items()}
    return response


def _schemas() -> dict[str, Any]:
    from reports import kinds

    kind_names = [kind.name for kind in kinds.all_kinds()]
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {"type": "string", "description": "Machine-readable, stable."},
                        "message": {"type": "string", "description": "One sentence for a person."},
                    },
                }
            },
        },
        "OrderRequest": {
            "type": "object",
            "required": ["email", "items", "card"],
            "examples": [
                {
                    "email": "ada@example.com",
                    "items": [{"sku": "BUZ-001", "quantity": 2}],
                    "card": "4242 4242 4242 4242",
                    "priority": "standard",
                }
            ],
            "properties": {
                "email": {"type": "string", "format": "email", "maxLength": 254},
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.ORDER_MAX_ITEMS,
                    "items": _ref("OrderRequestItem"),
                },
                "card": {
                    "type": "string",
                    "description": "12 to 19 digits; spaces and dashes are ignored. Test cards: 4242424242424242 "
                    "succeeds, 4000000000000002 is declined, 4000000000000119 fails to process.",
                },
                "priority": {"type": "string", "enum": list(Order.Priority.values), "default": "standard"},
            },
        },
        "OrderRequestItem": {
            "type": "object",
            "required": ["sku"],
            "properties": {
                "sku": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": NOT_BLANK},
                "quantity": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": settings.ORDER_MAX_QUANTITY,
                    "default": 1,
                    "description": "Lines with the same sku are added up; their sum has the same maximum.",
                },
            },
        },
        "Order": {
            "type": "object",
            "required": ["id", "email", "status", "priority", "total", "created_at", "items", "jobs"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "email": {"type": "string"},
                "status": {"type": "string", "enum": list(Order.Status.values)},
                "priority": {"type": "string", "enum": list(Order.Priority.values)},
                "total": DECIMAL,
                "created_at": DATE_TIME,
                "items": {"type": "array", "minItems": 1, "items": _ref("OrderItem")},
                "jobs": {"type": "array", "items": _ref("JobState")},
            },
        },
        "OrderItem": {
            "type": "object",
            "required": ["sku", "name", "quantity", "unit_price", "line_total"],
            "additionalProperties": False,
            "properties": {
                "sku": {"type": "string"},
                "name": {"type": "string"},
                "quantity": {"type": "integer", "minimum": 1},
                "unit_price": DECIMAL,
                "line_total": DECIMAL,
            },
        },
        "JobState": {
            "type": "object",
            "required": ["id", "actor", "queue", "status", "attempts"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "actor": {"type": "string"},
                "queue": {"type": "string"},
                "status": {"type": "string", "enum": list(Job.Status.values)},
                "attempts": {"type": "integer", "minimum": 0},
            },
        },
        "ReportRequest": {
            "oneOf": [_ref(f"ReportRequest_{name}") for name in kind_names],
            "discriminator": {
                "propertyName": "kind",
                "mapping": {name: f"#/components/schemas/ReportRequest_{name}" for name in kind_names},
            },
        },
        **{f"ReportRequest_{kind.name}": _report_request(kind) for kind in kinds.all_kinds()},
        "ReportStatus": {
            "type": "object",
            "required": [
                "id",
                "kind",
                "parameters",
                "status",
                "finished",
                "message",
                "progress",
                "rows_done",
                "total_rows",
                "queue_position",
                "eta_seconds",
                "row_count",
                "file_size",
                "file_size_text",
                "status_text",
                "detail",
                "bar",
                "error",
                "download_url",
                "created_at",
                "started_at",
                "finished_at",
                "status_url",
            ],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "kind": {"type": "string", "enum": kind_names},
                "parameters": {"type": "object", "description": "The parameters as validated and stored."},
                "status": {"type": "string", "enum": list(Report.Status.values)},
                "finished": {"type": "boolean"},
                "message": {"type": "string"},
                "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                "rows_done": {"type": "integer", "minimum": 0},
                "total_rows": {"type": ["integer", "null"], "minimum": 0},
                "queue_position": {"type": ["integer", "null"], "minimum": 0},
                "eta_seconds": {"type": ["number", "null"], "minimum": 0},
                "row_count": {"type": ["integer", "null"], "minimum": 0},
                "file_size": {"type": ["integer", "null"], "minimum": 0},
                "file_size_text": {"type": "string", "description": "The file's size for people, e.g. `27.3 KB`."},
                "status_text": {"type": "string", "description": "The status in words for people."},
                "detail": {"type": "string", "description": "A sentence on the queue place, rows so far or file."},
                "bar": {"type": "string", "enum": ["waiting", "counting", "progress", "done", "none"]},
                "error": {"type": "string", "description": "Why it failed; empty unless failed."},
                "download_url": {"type": ["string", "null"], "pattern": "^/api/reports/.+/download$"},
                "created_at": DATE_TIME,
                "started_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"},
                "status_url": {"type": "string", "pattern": "^/api/reports/.+/$"},
            },
        },
    }


def _report_request(kind: Any) -> dict[str, Any]:
    from django import forms

    properties: dict[str, Any] = {}
    required = []
    for name, field in kind.form.base_fields.items():
        if isinstance(field, forms.DateField):
            schema: dict[str, Any] = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
        elif isinstance(field, forms.IntegerField):
            schema = {"type": "integer"}
            if field.min_value is not None:
                schema["minimum"] = field.min_value
            if field.max_value is not None:
                schema["maximum"] = field.max_value
        else:
            schema = {"type": "string"}
        if not field.required:
            schema["type"] = [schema["type"], "null"]
        schema["description"] = str(field.help_text or field.label or name)
        properties[name] = schema
        if field.required:
            required.append(name)
    if "start" in properties and "end" in properties:
        date_range = f" The range covers at most {settings.BUZZER_REPORT_MAX_DAYS} days; end is not before start."
    else:
        date_range = ""
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "description": kind.description}
    parameters["description"] += date_range
    if required:
        parameters["required"] = required
    example = {"start": "2026-11-01", "end": "2026-11-30"} if date_range else {"threshold": 20}
    return {
        "type": "object",
        "required": ["kind", "parameters"] if required else ["kind"],
        "examples": [{"kind": kind.name, "parameters": example}],
        "properties": {"kind": {"type": "string", "enum": [kind.name]}, "parameters": parameters},
    }


def _rate(rate: str) -> str:
    """A rate ("600/m", "5/15m") in words for the document."""
    if not rate:
        return "no limit set"
    count, _, period = rate.partition("/")
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}[period[-1]]
    times = int(period[:-1] or 1)
    return f"{count} per {unit}" if times == 1 else f"{count} per {times} {unit}s"


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "string", "format": "uuid"},
    }


def document() -> dict[str, Any]:
    """The OpenAPI document, as a dict."""
    secured = [{"bearerAuth": []}]
    body_codes = BODY_CODES
    order_errors = _errors(
        {
            "400": [*body_codes["400"], "invalid_idempotency_key"],
            **COMMON_CODES,
            "402": ["card_declined", "processing_error", "incorrect_number"],
            "409": ["out_of_stock", "idempotency_key_in_progress"],
            "413": body_codes["413"],
            "415": body_codes["415"],
            "422": [
                "invalid_email",
                "invalid_items",
                "too_many_items",
                "invalid_sku",
                "invalid_quantity",
                "invalid_card",
                "invalid_priority",
                "unknown_sku",
                "idempotency_key_reused",
            ],
        }
    )
    # Each API key may place BUZZER_RATELIMIT_API_ORDERS orders (limits.services).
    order_errors.update(_errors({"429": ["rate_limited"]}))
    order_errors["429"]["description"] = (
        f"This API key placed too many orders lately (at most {_rate(settings.BUZZER_RATELIMITS['api_orders'])}); "
        "Retry-After says in how many seconds it may place the next one."
    )
    # The 409 of a key in progress says when to come back; out of stock does not.
    order_errors["409"]["headers"] = {
        "Retry-After": {**HEADERS["Retry-After"], "required": False},
    }
    report_request_errors = _errors(
        {
            **body_codes,
            **COMMON_CODES,
            "422": ["unknown_kind", "invalid_parameters"],
            "429": ["too_many_reports"],
        }
    )
    read_errors = _errors({**COMMON_CODES, "404": ["not_found"]})
    order = _json("The order.", _ref("Order"))
    report = _json("The report's status.", _ref("ReportStatus"), {"Cache-Control": "Cache-Control"})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Buzzer API",
            "version": "1",
            "description": (
                "Orders and reports. Every call but this document needs an API key "
                "(`manage.py create_api_key NAME`) as `Authorization: Bearer <key>`. Every error is JSON: "
                '`{"error": {"code": "...", "message": "..."}}`; a refused request changes nothing.'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/api/openapi.json": {
                "get": {
                    "operationId": "getOpenApiDocument",
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": _json("The OpenAPI document.", {"type": "object", "required": ["openapi", "paths"]}),
                        "405": _errors({"405": ["method_not_allowed"]})["405"],
                    },
                }
            },
            "/api/orders/": {
                "post": {
                    "operationId": "createOrder",
                    "summary": "Place an order: validate, charge, save; its jobs run in the background.",
                    "security": secured,
                    "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("OrderRequest")}},
                    },
                    "responses": {
                        "201": {
                            **_json("The order, placed.", _ref("Order")),
                            "headers": {
                                "Location": {"$ref": "#/components/headers/Location"},
                                "Idempotent-Replayed": {"$ref": "#/components/headers/Idempotent-Replayed"},
                            },
                        },
                        **order_errors,
                    },
                }
            },
            "/api/orders/{order_id}/": {
                "get": {
                    "operationId": "getOrder",
                    "summary": "An order placed with this API key, with the state of its jobs.",
                    "security": secured,
                    "parameters": [_path_id("order_id", "order")],
                    "responses": {"200": order, **read_errors},
                }
            },
            "/api/reports/": {
                "post": {
                    "operationId": "createReport",
                    "summary": "Ask for a report; it is generated in the background. An identical request "
                    "while one is queued or running returns that one.",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ReportRequest")}},
                    },
                    "responses": {
                        "202": _json(
                            "The report, accepted (or the identical one in progress).",
                            _ref("ReportStatus"),
                            {"Location": "Location", "Cache-Control": "Cache-Control"},
                        ),
                        **report_request_errors,
                    },
                }
            },
            "/api/reports/{report_id}/": {
                "get": {
                    "operationId": "getReport",
                    "summary": "A report of this API key: status, progress, queue position, ETA, download URL.",
                    "security": secured,
                    "parameters": [_path_id("report_id", "report")],
                    "responses": {"200": report, **read_errors},
                }
            },
            "/api/reports/{report_id}/download": {
                "get": {
                    "operationId": "downloadReport",
                    "summary": "The report's CSV file, once it has succeeded.",
                    "security": secured,
                    "parameters": [_path_id("report_id", "report")],
                    "responses": {
                        "200": {
                            "description": "The CSV file, as an attachment.",
                            "headers": {
                                "Cache-Control": {"$ref": "#/components/headers/Cache-Control"},
                                "Content-Disposition": _header(
                                    "attachment; filename=...", {"type": "string", "pattern": "^attachment;"}, True
                                ),
                            },
                            "content": {"text/csv": {"schema": {"type": "string"}}},
                        },
                        **_errors({**COMMON_CODES, "404": ["not_found"]}),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `manage.py create_api_key NAME`.",
                }
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": (
                        "Makes a retry safe: the same key with the same body replays the first response "
                        "(kept 48 hours); with another body it is refused (422); while the first request "
                        "runs, 409 with Retry-After."
                    ),
                    "schema": IDEMPOTENCY_KEY,
                }
            },
            "headers": HEADERS,
            "schemas": _schemas(),
        },
    }


@csrf_exempt
def openapi_view(request: HttpRequest) -> JsonResponse:
    """`GET /api/openapi.json`: public, like any API's description."""
    from orders.api import error

    if request.method != "GET":
        return error(405, "method_not_allowed", "Use GET here.", Allow="GET")
    return JsonResponse(document(), json_dumps_params={"indent": 1})


openapi_view.api_methods = ("GET",)  # type: ignore[attr-defined]


@require_GET
def docs_view(request: HttpRequest) -> HttpResponse:
    """`GET /api/docs/`: the document above for people, through Swagger UI (the static
    files of the `drf-spectacular-sidecar` package: no CDN)."""
    return render(request, "orders/api_docs.html", {"schema_url": reverse("orders:api-openapi")})


docs_view.documentation_page = True  # type: ignore[attr-defined]  # an HTML page under /api/, no operation
