"""The OpenAPI document at /api/openapi.json is true: it is valid OpenAPI 3.1, it names
exactly the API's routes and methods, and every operation, driven through the real views
with valid and invalid input, answers every status and error code it documents (and no
other) with headers and a body that match it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis
from django.test import Client
from openapi_spec_validator import validate

from orders import idempotency
from orders.models import ApiKey, Order
from reports import services
from reports.models import Report
from tests.support.data import order_body
from tests.support.openapi import api_routes, check_response, documented_error_codes, documented_statuses

pytestmark = pytest.mark.django_db

REPORT = {"kind": "low_stock", "parameters": {"threshold": 20}}


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path, stub_broker: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def doc(client: Client) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


class Exercise:
    """Sends requests to one operation and records what it answered, checked."""

    def __init__(self, client: Client, doc: dict[str, Any], path: str, method: str, key: str) -> None:
        self.client, self.doc, self.path, self.method, self.key = client, doc, path, method, key
        self.seen: set[tuple[int, str]] = set()

    def __call__(
        self,
        url: str,
        body: Any = None,
        *,
        method: str | None = None,
        key: str | None = "default",
        content_type: str = "application/json",
        **headers: str,
    ) -> Any:
        if key is not None:
            headers["Authorization"] = f"Bearer {self.key if key == 'default' else key}"
        method = method or self.method
        data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        response = self.client.generic(method, url, data=data or b"", content_type=content_type, headers=headers)
        parsed = check_response(response, self.path, self.method, self.doc)  # a 405 is documented there too
        code = parsed["error"]["code"] if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict) else ""
        self.seen.add((response.status_code, code))
        response.checked_body = parsed  # a streamed file can be read only once
        return response

    def with_redis_failing(self, url: str, body: Any = None) -> Any:
        """The request as it goes when Redis fails under it: config.middleware answers."""
        with mock.patch("orders.api.authenticate", side_effect=redis.ConnectionError("Connection refused")):
            response = self(url, body)
        assert response.status_code == 503 and response["Retry-After"] == "5"
        self.with_database_failing(url, body)
        return response

    def with_database_failing(self, url: str, body: Any = None) -> Any:
        """The request as it goes when the database refuses connections under it."""
        with mock.patch("orders.api.authenticate", side_effect=database_down()):
            response = self(url, body)
        assert response.status_code == 503 and response["Retry-After"] == "5"
        assert response.checked_body["error"]["code"] == "database_unavailable"
        return response

    def assert_everything_documented_was_seen(self) -> None:
        statuses = {status for status, _ in self.seen}
        assert statuses == documented_statuses(self.path, self.method, self.doc)
        codes = {(status, code) for status, code in self.seen if code}
        assert codes == documented_error_codes(self.path, self.method, self.doc)


def database_down() -> Exception:
    """What Django raises when PostgreSQL refuses a connection (the driver's error behind it)."""
    import psycopg
    from django.db import OperationalError

    try:
        try:
            raise psycopg.OperationalError("connection failed: FATAL:  sorry, too many clients already")
        except psycopg.OperationalError as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as wrapped:
        return wrapped


def test_the_document_is_public_and_valid_openapi_3_1(client: Client, doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }


def test_every_api_route_is_documented_and_every_documented_path_is_a_route(doc: dict[str, Any]) -> None:
    routes = api_routes()

    assert set(routes) == set(doc["paths"])
    assert len(routes) >= 6


def test_each_path_documents_exactly_the_methods_its_view_answers(doc: dict[str, Any]) -> None:
    for path, view in api_routes().items():
        documented = {method.upper() for method in doc["paths"][path]}
        assert documented == set(view.api_methods), path


def test_every_operation_but_the_document_needs_the_bearer_key(doc: dict[str, Any]) -> None:
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            expected = [] if path == "/api/openapi.json" else [{"bearerAuth": []}]
            assert op["security"] == expected, (method, path)


def test_the_document_follows_the_settings_it_describes(client: Client, settings: Any) -> None:
    settings.ORDER_MAX_ITEMS = 7
    settings.ORDER_MAX_QUANTITY = 11

    schemas = client.get("/api/openapi.json").json()["components"]["schemas"]

    assert schemas["OrderRequest"]["properties"]["items"]["maxItems"] == 7
    assert schemas["OrderRequestItem"]["properties"]["quantity"]["maximum"] == 11


def test_the_document_operation(client: Client, doc: dict[str, Any], api_key: str) -> None:
    send = Exercise(client, doc, "/api/openapi.json", "GET", api_key)
    send("/api/openapi.json", key=None)
    send("/api/openapi.json", method="POST", key=None)
    send.assert_everything_documented_was_seen()


def test_create_order_answers_every_documented_status(
    client: Client, doc: dict[str, Any], api_key: str, products: Any, settings: Any
) -> None:
    send = Exercise(client, doc, "/api/orders/", "POST", api_key)
    url = "/api/orders/"

    created = send(url, order_body())
    assert created.status_code == 201
    assert created["Location"] == f"/api/orders/{created.json()['id']}/"
    first = send(url, order_body(), **{"Idempotency-Key": "k-1"})
    replay = send(url, order_body(), **{"Idempotency-Key": "k-1"})
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    assert Order.objects.count() == 2

    send(url, b"{not json")
    send(url, order_body(), **{"Idempotency-Key": " "})
    send(url, order_body(), key=None)
    send(url, order_body(card="4000000000000002"))
    send(url, order_body(card="4000000000000119"))
    send(url, order_body(card="4242424242424241"))
    send(url, method="GET")
    send(url, order_body(items=[{"sku": "CAP-001", "quantity": 4}]))
    api_key_row = ApiKey.objects.get()
    idempotency.begin(api_key_row, "busy", idempotency.fingerprint(order_body()))
    busy = send(url, order_body(), **{"Idempotency-Key": "busy"})
    assert busy["Retry-After"] == "1"
    send(url, order_body(note="x" * 70_000))
    send(url, "email=a@b.c", content_type="application/x-www-form-urlencoded")
    send(url, order_body(email="nope"))
    send(url, order_body(items=[]))
    send(url, order_body(items=[{"sku": "BUZ-001"}] * (settings.ORDER_MAX_ITEMS + 1)))
    send(url, order_body(items=[{"quantity": 1}]))
    send(url, order_body(items=[{"sku": "BUZ-001", "quantity": 0}]))
    send(url, order_body(card="12"))
    send(url, order_body(priority="urgent"))
    send(url, order_body(items=[{"sku": "NOPE-1"}]))
    send(url, order_body(email="other@example.com"), **{"Idempotency-Key": "k-1"})
    send.with_redis_failing(url, order_body())
    settings.BUZZER_RATELIMITS = {**settings.BUZZER_RATELIMITS, "api_orders": "1/h"}
    send(url, order_body(items=[]))
    limited = send(url, order_body())
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0

    send.assert_everything_documented_was_seen()


def test_get_order_answers_every_documented_status(
    client: Client, doc: dict[str, Any], api_key: str, products: Any
) -> None:
    send = Exercise(client, doc, "/api/orders/{order_id}/", "GET", api_key)
    order_id = Exercise(client, doc, "/api/orders/", "POST", api_key)("/api/orders/", order_body()).json()["id"]
    _, other_key = ApiKey.issue("other")

    mine = send(f"/api/orders/{order_id}/")
    assert mine.json()["id"] == order_id and len(mine.json()["jobs"]) == 3
    send(f"/api/orders/{order_id}/", key=None)
    send(f"/api/orders/{order_id}/", key=other_key)
    send(f"/api/orders/{uuid.uuid4()}/")
    send("/api/orders/not-a-uuid/")
    send(f"/api/orders/{order_id}/", method="DELETE")
    send.with_redis_failing(f"/api/orders/{order_id}/")

    send.assert_everything_documented_was_seen()


def test_create_report_answers_every_documented_status(
    client: Client, doc: dict[str, Any], api_key: str, settings: Any
) -> None:
    send = Exercise(client, doc, "/api/reports/", "POST", api_key)
    url = "/api/reports/"
    settings.BUZZER_REPORTS_PER_USER = 1

    accepted = send(url, REPORT)
    assert accepted.status_code == 202
    assert accepted["Location"] == accepted.json()["status_url"]
    assert send(url, REPORT).json()["id"] == accepted.json()["id"]  # identical: the same report
    send(url, b"[1, 2]")
    send(url, REPORT, key=None)
    send(url, method="PUT")
    send(url, {"kind": "low_stock", "parameters": {"pad": "x" * 17_000}})
    send(url, "kind=sales", content_type="text/plain")
    send(url, {"kind": "payroll"})
    send(url, {"kind": "sales", "parameters": {"start": "2026-11-05", "end": "2026-11-01"}})
    limited = send(url, {"kind": "low_stock", "parameters": {"threshold": 30}})
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    send.with_redis_failing(url, REPORT)
    assert Report.objects.count() == 1

    send.assert_everything_documented_was_seen()


@pytest.mark.parametrize("suffix", ["", "download"])
def test_report_reads_answer_every_documented_status(
    client: Client, doc: dict[str, Any], api_key: str, products: Any, suffix: str
) -> None:
    path = "/api/reports/{report_id}/" + suffix
    send = Exercise(client, doc, path, "GET", api_key)
    report_id = Exercise(client, doc, "/api/reports/", "POST", api_key)("/api/reports/", REPORT).json()["id"]
    _, other_key = ApiKey.issue("other")

    queued = send(f"/api/reports/{report_id}/{suffix}")
    assert queued.status_code == (200 if not suffix else 404)
    services.generate_report(report_id)
    done = send(f"/api/reports/{report_id}/{suffix}")
    assert done.status_code == 200
    if suffix:
        assert done.checked_body.startswith(b"sku,product,stock,price\r\nCAP-001,Cap,3,15.00")
    else:
        assert done.json()["download_url"] == f"/api/reports/{report_id}/download"
    send(f"/api/reports/{report_id}/{suffix}", key=None)
    send(f"/api/reports/{report_id}/{suffix}", key=other_key)
    send(f"/api/reports/{uuid.uuid4()}/{suffix}")
    send(f"/api/reports/12345/{suffix}")
    send(f"/api/reports/{report_id}/{suffix}", method="POST")
    send.with_redis_failing(f"/api/reports/{report_id}/{suffix}")

    send.assert_everything_documented_was_seen()


def test_a_report_whose_file_is_gone_is_a_json_404(client: Client, doc: dict[str, Any], api_key: str) -> None:
    send = Exercise(client, doc, "/api/reports/{report_id}/download", "GET", api_key)
    report_id = Exercise(client, doc, "/api/reports/", "POST", api_key)("/api/reports/", REPORT).json()["id"]
    services.generate_report(report_id)
    report = Report.objects.get(pk=report_id)
    report.file.storage.delete(report.file.name)

    response = send(f"/api/reports/{report_id}/download")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
