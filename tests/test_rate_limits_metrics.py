"""Every request refused by a limit is counted in Redis, by limit, and /metrics exports the
counts as buzzer_rate_limited_total{scope=...} (all limits, 0 until one refuses)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from limits import services
from tests.support.data import order_body

pytestmark = pytest.mark.django_db


def rate_limited(client: Client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.labels["scope"]: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if sample.name == "buzzer_rate_limited_total"
    }


def test_metrics_count_the_refused_requests_by_limit(
    client: Client, api: Any, products: Any, real_broker: Any, settings: Any
) -> None:
    assert rate_limited(client) == dict.fromkeys(services.SCOPES, 0)
    settings.BUZZER_RATELIMITS = {**settings.BUZZER_RATELIMITS, "api_orders": "1/m", "login_ip": "1/15m"}
    for _ in range(3):
        api.post("/api/orders/", order_body(items=[]))
    Client().post("/accounts/login/", {"username": "nobody", "password": "x"})
    Client().post("/accounts/login/", {"username": "nobody", "password": "x"})

    counts = rate_limited(client)

    assert counts["api_orders"] == 2
    assert counts["login_ip"] == 1
    assert counts["checkout_session"] == counts["checkout_ip"] == counts["login_username"] == 0
