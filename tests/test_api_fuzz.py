"""Fuzzing the JSON API from its OpenAPI document.

Schemathesis generates requests for every documented operation (examples, boundary
cases and random ones; valid and invalid) and sends them to the real Django application
over WSGI, with a valid API key and without one. Every answer must be documented: no
5xx, no undocumented status, headers and body as the document says. Hypothesis then
throws bodies at the two POST endpoints that the document's schemas would never produce
(any JSON, wrong types, huge numbers, unicode, deep nesting, broken bytes), and every
request that is refused must have changed nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from jobs.models import Job
from orders.models import IdempotencyKey, Order
from reports.models import Report
from tests.support.data import order_body
from tests.support.openapi import check_response

pytestmark = pytest.mark.django_db

# Bounded for a 2-core machine: the whole file runs in well under a minute.
SCHEMATHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
BODIES = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)

# A body that is valid by the schema can still be refused by the shop's rules: an sku
# that is not in the catalogue (422), a declined card (402), no stock (409), the report
# limit (429). It must never be refused as malformed (400, 413, 415) or crash.
ACCEPTABLE_FOR_VALID_DATA = ["2xx", "402", "404", "409", "422", "429"]


@pytest.fixture(autouse=True)
def _isolated(settings: Any, tmp_path: Path, stub_broker: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    # Schemathesis calls the real WSGI application, in this thread and on the test's
    # database connection: like Django's test client, keep it from closing that
    # connection after each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())
schema.config.generation.update(modes=list(GenerationMode), allow_x00=True)
schema.config.checks.positive_data_acceptance.expected_statuses = ACCEPTABLE_FOR_VALID_DATA


class Counts:
    """What a request may have created."""

    def __init__(self) -> None:
        self.before = self.now()

    @staticmethod
    def now() -> dict[str, int]:
        return {
            "orders": Order.objects.count(),
            "jobs": Job.objects.count(),
            "reports": Report.objects.count(),
            "idempotency_keys": IdempotencyKey.objects.count(),
        }

    def assert_nothing_created(self, status: int, body: Any) -> None:
        after = self.now()
        created = {name: after[name] - self.before[name] for name in after if after[name] != self.before[name]}
        stored = created.pop("idempotency_keys", 0)
        assert not created, f"a request refused with {status} created {created}"
        if stored:
            # The one thing a refusal may leave: its own answer, stored under its
            # Idempotency-Key so that a retry gets the same answer (never "in progress").
            assert stored == 1
            record = IdempotencyKey.objects.order_by("-id").first()
            assert record is not None
            assert (record.status, record.response_status, record.response_body) == ("done", status, body)


def _assert_no_server_error(response: Any) -> None:
    assert response.status_code < 500, response.content[:500]


@schema.parametrize()
@SCHEMATHESIS
def test_with_a_valid_key_every_answer_is_documented(case: Any, api_key: str, products: Any) -> None:
    counts = Counts()
    # Passed as explicit headers, the check for ignored authentication also sends the same
    # request without the key and with a wrong one, and expects them refused.
    response = case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"})
    if response.status_code >= 400 and case.method.upper() == "POST":
        counts.assert_nothing_created(response.status_code, response.json())


def _expected_without_key(case: Any) -> int:
    """401, unless the request never reaches an API view: an undocumented method is
    refused first (405), a path whose id is not a UUID matches no route (404)."""
    try:
        resolve(case.formatted_path)
    except Resolver404:
        return 404
    return 401 if case.method.upper() == case.operation.method.upper() else 405


@schema.parametrize()
@SCHEMATHESIS
def test_without_a_valid_key_every_call_is_refused_with_401(case: Any, api_key: str, products: Any) -> None:
    counts = Counts()
    for authorization in (None, "Bearer bz_not-a-key", f"Basic {api_key}", f"Bearer{api_key}"):
        headers = {"Authorization": authorization} if authorization else {}
        if authorization is None and case.headers:
            case.headers.pop("Authorization", None)
        response = case.call(headers=headers)
        # Valid data is refused here on purpose: 401 is the point.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        if case.path != "/api/openapi.json":
            expected = _expected_without_key(case)
            assert response.status_code == expected, (authorization, response.status_code, response.content[:300])
            assert response.json()["error"]["code"] == {401: "unauthorized", 404: "not_found"}.get(
                expected, "method_not_allowed"
            )
    assert Counts.now() == counts.before


# --- Bodies the document's schemas would never produce ------------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "BUZ-001", "4242424242424242", "²²²²²²²²²²²²", "١٢٣٤٥٦٧٨٩٠١٢", "2026-11-01"])
)
# Card numbers in digits of other scripts and digit-like signs (all str.isdigit()), with
# the spaces and dashes a card number may have.
CARDS = st.lists(st.sampled_from(list("0424²³٤٢𝟒४ -")), min_size=10, max_size=24).map("".join)
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _mutated(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid body with some of its fields (or their parts) replaced by junk."""
    keys = list(valid)
    return st.builds(
        lambda replace, junk, extra: {**valid, **{k: junk for k in replace}, **extra},
        st.sets(st.sampled_from(keys), min_size=1, max_size=len(keys)),
        ANY_JSON,
        st.dictionaries(st.text(max_size=8), ANY_JSON, max_size=2),
    )


ORDER_BODIES = (
    ANY_JSON
    | _mutated(order_body())
    | st.builds(lambda item: order_body(items=[item]), ANY_JSON)
    | st.builds(lambda sku, quantity: order_body(items=[{"sku": sku, "quantity": quantity}]), JSON_LEAVES, JSON_LEAVES)
    | st.builds(lambda card: order_body(card=card), JSON_LEAVES | CARDS)
    | st.builds(lambda email: order_body(email=email), st.text(max_size=300) | st.emails())
)
REPORT_BODIES = (
    ANY_JSON
    | _mutated({"kind": "sales", "parameters": {"start": "2026-11-01", "end": "2026-11-30"}})
    | st.builds(
        lambda kind, start, end: {"kind": kind, "parameters": {"start": start, "end": end}},
        st.sampled_from(["sales", "orders"]),
        JSON_LEAVES | st.dates().map(str) | st.dates().map(lambda d: d.strftime("%m/%d/%Y")),
        JSON_LEAVES | st.dates().map(str),
    )
    | st.builds(lambda threshold: {"kind": "low_stock", "parameters": {"threshold": threshold}}, ANY_JSON)
    | st.builds(lambda parameters: {"kind": "low_stock", "parameters": parameters}, ANY_JSON)
)
RAW_BODIES = st.binary(max_size=200) | st.integers(min_value=1, max_value=60_000).map(lambda n: b"[" * n + b"]" * n)


@pytest.fixture
def post(client: Client, api_key: str) -> Iterator[Any]:
    def send(path: str, data: bytes, idempotency_key: str | None) -> Any:
        headers = {"Authorization": f"Bearer {api_key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        counts = Counts()
        response = client.post(path, data=data, content_type="application/json", headers=headers)
        _assert_no_server_error(response)
        body = check_response(response, path, "POST")
        if response.status_code >= 400:
            counts.assert_nothing_created(response.status_code, body)
        return response

    yield send


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


@BODIES
@given(body=ORDER_BODIES, idempotency_key=st.none() | st.text(st.characters(codec="latin-1"), min_size=1, max_size=20))
def test_any_order_body_is_answered_as_documented_and_a_refusal_creates_nothing(
    post: Any, products: Any, body: Any, idempotency_key: str | None
) -> None:
    post("/api/orders/", _encode(body), idempotency_key)


@BODIES
@given(body=REPORT_BODIES)
def test_any_report_body_is_answered_as_documented_and_a_refusal_creates_nothing(post: Any, body: Any) -> None:
    post("/api/reports/", _encode(body), None)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(path=st.sampled_from(["/api/orders/", "/api/reports/"]), data=RAW_BODIES)
def test_any_bytes_are_answered_as_documented_and_create_nothing(post: Any, path: str, data: bytes) -> None:
    post(path, data, None)
