from datetime import timedelta

import pytest
from django.utils import timezone

from orders import idempotency
from orders.models import ApiKey, IdempotencyKey, Order
from tests.support.data import order_body

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stub(stub_broker):
    return stub_broker


def post(api, body, key):
    return api.post("/api/orders/", body, **{"Idempotency-Key": key})


def test_same_key_and_body_replays_the_first_response_without_a_second_order(api, products):
    first = post(api, order_body(), "retry-1")
    second = post(api, order_body(), "retry-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert second["Location"] == first["Location"]
    assert Order.objects.count() == 1


def test_same_key_with_another_body_is_422(api, products):
    post(api, order_body(), "retry-2")
    response = post(api, order_body(email="bob@example.com"), "retry-2")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


def test_key_still_in_progress_is_409(api, products):
    api_key = ApiKey.objects.get()
    IdempotencyKey.objects.create(api_key=api_key, key="busy", request_hash=idempotency.fingerprint(order_body()))

    response = post(api, order_body(), "busy")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_progress"
    assert response["Retry-After"] == "1"
    assert Order.objects.count() == 0


def test_key_left_in_progress_by_a_dead_request_is_taken_over(api, products):
    api_key = ApiKey.objects.get()
    IdempotencyKey.objects.create(
        api_key=api_key,
        key="orphan",
        request_hash=idempotency.fingerprint(order_body()),
        created_at=timezone.now() - timedelta(minutes=5),
    )

    response = post(api, order_body(), "orphan")

    assert response.status_code == 201
    assert Order.objects.count() == 1


def test_keys_are_scoped_to_the_client(api, products):
    post(api, order_body(), "shared")
    _, other = ApiKey.issue("other")
    response = api.post("/api/orders/", order_body(), key=other, **{"Idempotency-Key": "shared"})

    assert response.status_code == 201
    assert Order.objects.count() == 2


def test_a_declined_payment_is_replayed_too(api, products):
    first = post(api, order_body(card="4000000000000002"), "declined")
    second = post(api, order_body(card="4000000000000002"), "declined")

    assert first.status_code == second.status_code == 402
    assert second.json() == first.json()


def test_keys_are_kept_for_at_least_24_hours(api, products):
    post(api, order_body(), "young")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))

    idempotency.prune(timedelta(hours=24))

    assert post(api, order_body(), "young")["Idempotent-Replayed"] == "true"
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency.prune(timedelta(hours=24)) == 1


def test_overlong_key_is_400(api, products):
    response = post(api, order_body(), "k" * 256)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
