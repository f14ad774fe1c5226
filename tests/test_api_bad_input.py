"""Every bad request gets a JSON error with a code and a sentence, and changes nothing."""

import json

import pytest

from jobs.models import Job
from orders.models import IdempotencyKey, Order, Product
from tests.support.data import order_body

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stub(stub_broker):
    return stub_broker


def assert_nothing_changed(products, stub_broker):
    assert Order.objects.count() == 0
    assert Job.objects.count() == 0
    assert all(q.qsize() == 0 for q in stub_broker.queues.values())
    for sku, product in products.items():
        assert Product.objects.get(sku=sku).stock == product.stock


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and len(error["message"]) > 10


BAD_BODIES = [
    pytest.param(order_body(items=[{"sku": "NOPE-1", "quantity": 1}]), 422, "unknown_sku", id="unknown-sku"),
    pytest.param(order_body(items=[{"sku": "OLD-001", "quantity": 1}]), 422, "unknown_sku", id="inactive-sku"),
    pytest.param(order_body(items=[{"sku": "BUZ-001", "quantity": 0}]), 422, "invalid_quantity", id="quantity-0"),
    pytest.param(order_body(items=[{"sku": "BUZ-001", "quantity": -3}]), 422, "invalid_quantity", id="negative"),
    pytest.param(order_body(items=[{"sku": "BUZ-001", "quantity": 10**9}]), 422, "invalid_quantity", id="absurd"),
    pytest.param(order_body(items=[{"sku": "BUZ-001", "quantity": 1.5}]), 422, "invalid_quantity", id="fraction"),
    pytest.param(order_body(items=[{"sku": "BUZ-001", "quantity": "2"}]), 422, "invalid_quantity", id="string-qty"),
    pytest.param(order_body(items=[{"sku": "BUZ-001", "quantity": True}]), 422, "invalid_quantity", id="bool-qty"),
    pytest.param(order_body(items=[{"sku": "MUG-001", "quantity": 1}] * 51), 422, "too_many_items", id="too-many"),
    pytest.param(order_body(items=[]), 422, "invalid_items", id="no-items"),
    pytest.param(order_body(items="BUZ-001"), 422, "invalid_items", id="items-not-list"),
    pytest.param(order_body(items=[{"quantity": 1}]), 422, "invalid_sku", id="missing-sku"),
    pytest.param(order_body(email="not-an-email"), 422, "invalid_email", id="bad-email"),
    pytest.param(order_body(email=None), 422, "invalid_email", id="no-email"),
    pytest.param(order_body(card="1234"), 422, "invalid_card", id="short-card"),
    pytest.param(order_body(priority="urgent"), 422, "invalid_priority", id="bad-priority"),
    pytest.param(order_body(items=[{"sku": "CAP-001", "quantity": 4}]), 409, "out_of_stock", id="out-of-stock"),
    pytest.param(order_body(card="4000000000000002"), 402, "card_declined", id="declined"),
    pytest.param(order_body(card="4000000000000119"), 402, "processing_error", id="processing-error"),
    pytest.param(order_body(card="4242424242424241"), 402, "incorrect_number", id="luhn"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
def test_bad_order_is_refused_and_changes_nothing(api, products, stub_broker, body, status, code):
    assert_error(api.post("/api/orders/", body), status, code)
    assert_nothing_changed(products, stub_broker)


def test_declined_card_says_why(api, products, stub_broker):
    response = api.post("/api/orders/", order_body(card="4000000000000002"))
    assert response.json()["error"]["message"] == "The card was declined."


def test_malformed_json_is_400(api, products, stub_broker):
    assert_error(api.post("/api/orders/", b'{"email": "a@b.c", '), 400, "malformed_json")
    assert_error(api.post("/api/orders/", b"[1, 2]"), 400, "malformed_json")
    assert_error(api.post("/api/orders/", b"\xff\xfe"), 400, "malformed_json")
    assert_nothing_changed(products, stub_broker)


def test_wrong_content_type_is_415(api, products, stub_broker):
    response = api.post("/api/orders/", json.dumps(order_body()), content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")
    response = api.post("/api/orders/", "email=a@b.c", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_changed(products, stub_broker)


def test_body_over_64_kb_is_413(api, products, stub_broker):
    body = order_body(note="x" * (64 * 1024))
    assert_error(api.post("/api/orders/", body), 413, "body_too_large")
    assert_nothing_changed(products, stub_broker)


@pytest.mark.parametrize("key", [None, "", "bz_wrong", "Basic abc"])
def test_missing_or_bad_api_key_is_401(api, products, stub_broker, key):
    if key == "Basic abc":
        response = api.client.post(
            "/api/orders/", json.dumps(order_body()), content_type="application/json", headers={"Authorization": key}
        )
    else:
        response = api.post("/api/orders/", order_body(), key=key)
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"
    assert_nothing_changed(products, stub_broker)


def test_deactivated_api_key_is_401(api, products, stub_broker):
    from orders.models import ApiKey

    ApiKey.objects.update(active=False)
    assert_error(api.post("/api/orders/", order_body()), 401, "unauthorized")


def test_wrong_method_is_405_json(api, products):
    response = api.client.delete("/api/orders/", headers={"Authorization": f"Bearer {api.key}"})
    assert_error(response, 405, "method_not_allowed")


def test_failed_order_leaves_no_idempotency_record_in_progress(api, products, stub_broker):
    response = api.post("/api/orders/", order_body(card="4000000000000002"), **{"Idempotency-Key": "k1"})
    assert response.status_code == 402
    record = IdempotencyKey.objects.get()
    assert record.status == "done" and record.response_status == 402
