from decimal import Decimal

import dramatiq
import pytest

from jobs.models import Job
from orders.models import ApiKey, Order
from tests.support.data import order_body

pytestmark = pytest.mark.django_db


def test_post_order_answers_201_with_the_order_and_its_three_jobs(api, products, stub_broker):
    response = api.post("/api/orders/", order_body(items=[{"sku": "BUZ-001", "quantity": 2}, {"sku": "MUG-001"}]))

    assert response.status_code == 201
    doc = response.json()
    order = Order.objects.get()
    assert doc["id"] == str(order.id)
    assert response["Location"] == f"/api/orders/{order.id}/"
    assert doc["total"] == "62.30" and order.total == Decimal("62.30")
    assert [(i["sku"], i["quantity"], i["line_total"]) for i in doc["items"]] == [
        ("BUZ-001", 2, "49.80"),
        ("MUG-001", 1, "12.50"),
    ]
    assert sorted(j["actor"] for j in doc["jobs"]) == [
        "record_analytics",
        "send_confirmation_email",
        "update_inventory",
    ]
    assert {j["queue"] for j in doc["jobs"]} == {"default"}


def test_order_jobs_are_dispatched_after_commit_with_the_job_id_as_message_id(
    api, products, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        api.post("/api/orders/", order_body())
    assert stub_broker.queues["default"].qsize() == 0  # nothing is sent before COMMIT
    for callback in callbacks:
        callback()

    sent_ids = {dramatiq.Message.decode(raw).message_id for raw in list(stub_broker.queues["default"].queue)}
    assert sent_ids == {str(i) for i in Job.objects.values_list("id", flat=True)}
    assert len(sent_ids) == 3
    assert set(Job.objects.values_list("status", flat=True)) == {"enqueued"}


def test_premium_order_jobs_go_to_the_premium_queue(api, products, stub_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/orders/", order_body(priority="premium"))

    assert set(Job.objects.values_list("queue_name", flat=True)) == {"premium"}
    assert stub_broker.queues["premium"].qsize() == 3
    assert stub_broker.queues["default"].qsize() == 0


def test_get_order_returns_the_same_document(api, products, stub_broker):
    created = api.post("/api/orders/", order_body()).json()

    response = api.get(f"/api/orders/{created['id']}/")

    assert response.status_code == 200
    doc = response.json()
    assert doc["id"] == created["id"] and doc["items"] == created["items"]
    assert [j["id"] for j in doc["jobs"]] == [j["id"] for j in created["jobs"]]


def test_another_clients_order_is_not_found(api, products, stub_broker):
    created = api.post("/api/orders/", order_body()).json()
    _, other = ApiKey.issue("other")

    response = api.get(f"/api/orders/{created['id']}/", key=other)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_api_key_is_stored_only_as_a_hash(api_key):
    row = ApiKey.objects.get()
    assert api_key not in (row.key_hash, row.prefix)
    assert len(row.key_hash) == 64
