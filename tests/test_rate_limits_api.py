"""POST /api/orders/ is limited per API key: past the limit a JSON 429 in the API's error
shape with Retry-After, nothing created; other keys go on; reads are not limited."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import Job
from orders.models import ApiKey, Order
from tests.support.data import order_body

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _three_orders_a_minute(settings: Any, stub_broker: Any) -> None:
    settings.BUZZER_RATELIMITS = {**settings.BUZZER_RATELIMITS, "api_orders": "3/m"}


def test_past_its_limit_a_key_gets_429_with_retry_after_and_a_json_error(api: Any, products: Any) -> None:
    for _ in range(3):
        assert api.post("/api/orders/", order_body()).status_code == 201

    refused = api.post("/api/orders/", order_body())

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused["Content-Type"] == "application/json"
    error = refused.json()["error"]
    assert refused.json() == {"error": {"code": "rate_limited", "message": error["message"]}}
    assert error["message"].startswith("This API key placed too many orders") and error["message"].endswith(".")
    assert Order.objects.count() == 3 and Job.objects.count() == 9


def test_other_keys_are_not_limited_by_one_that_is(api: Any, products: Any) -> None:
    for _ in range(4):
        api.post("/api/orders/", order_body())
    _, other = ApiKey.issue("other")

    assert api.post("/api/orders/", order_body(), key=other).status_code == 201


def test_refused_orders_count_too_and_reads_are_not_limited(api: Any, products: Any) -> None:
    placed = api.post("/api/orders/", order_body()).json()
    api.post("/api/orders/", order_body(card="4000000000000002"))  # declined: still an attempt
    api.post("/api/orders/", b"{not json")

    assert api.post("/api/orders/", order_body()).status_code == 429
    for _ in range(5):
        assert api.get(f"/api/orders/{placed['id']}/").status_code == 200


def test_a_request_without_a_valid_key_is_401_not_429(api: Any, products: Any) -> None:
    for _ in range(4):
        api.post("/api/orders/", order_body())

    assert api.post("/api/orders/", order_body(), key="bz_unknown").status_code == 401


def test_limits_can_be_switched_off(api: Any, products: Any, settings: Any) -> None:
    settings.BUZZER_RATELIMIT_ENABLED = False

    assert all(api.post("/api/orders/", order_body()).status_code == 201 for _ in range(5))
