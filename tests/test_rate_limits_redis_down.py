"""Rate limits fail open: when their Redis does not answer, requests are served as if there
were no limits (never a 500, never a 429), the failure is logged once, and Redis is left
alone for BUZZER_RATELIMIT_BACKOFF_SECONDS so that no request waits on it meanwhile."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from limits import services
from orders.payments import CARD_OK
from tests.support.data import order_body
from tests.support.redis_server import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits_redis_down(settings: Any, stub_broker: Any) -> None:
    """The rate-limit cache on a port where nothing listens; tiny limits."""
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {**settings.CACHES["ratelimit"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"},
    }
    settings.BUZZER_RATELIMITS = dict.fromkeys(services.SCOPES, "1/m")


def test_api_orders_are_placed_while_the_limits_redis_is_down(
    api: Any, products: Any, limits_redis_down: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="limits.services"):
        statuses = [api.post("/api/orders/", order_body()).status_code for _ in range(4)]

    assert statuses == [201] * 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "limits.services"]
    assert len(warnings) == 1 and "Rate limits are not enforced" in warnings[0]


def test_logins_and_checkout_are_served_while_the_limits_redis_is_down(
    django_user_model: Any, products: Any, limits_redis_down: None
) -> None:
    django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    client = Client()
    for _ in range(3):
        assert client.post("/accounts/login/", {"username": "ada", "password": "wrong"}).status_code == 200
    assert client.post("/accounts/login/", {"username": "ada", "password": "pw-for-tests-only"}).status_code == 302
    form = {"email": "ada@example.com", "qty-BUZ-001": "1", "card": CARD_OK}
    assert [client.post("/orders/", form).status_code for _ in range(3)] == [302] * 3


def test_after_a_failure_redis_is_not_asked_again_until_the_backoff_ends(
    api: Any, products: Any, limits_redis_down: None, settings: Any
) -> None:
    settings.BUZZER_RATELIMIT_BACKOFF_SECONDS = 60
    api.post("/api/orders/", order_body())
    with mock.patch("limits.services.get_usage") as get_usage:
        assert api.post("/api/orders/", order_body()).status_code == 201
    get_usage.assert_not_called()


def test_metrics_still_answer_when_the_counts_cannot_be_read(
    client: Client, real_broker: Any, limits_redis_down: None
) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert "# TYPE buzzer_rate_limited_total counter" in lines
    assert not [line for line in lines if line.startswith("buzzer_rate_limited_total")]  # no sample, no made-up 0
    assert any(line.startswith("buzzer_queue_depth") for line in lines)
