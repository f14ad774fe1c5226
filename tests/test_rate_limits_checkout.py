"""The shop's checkout is limited per browser session and per address: past the limit a
429 page that says when to come back, and no order."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from orders.models import Order
from orders.payments import CARD_OK

pytestmark = pytest.mark.django_db

FORM = {"email": "ada@example.com", "qty-BUZ-001": "1", "card": CARD_OK, "priority": "standard"}


@pytest.fixture(autouse=True)
def _broker(stub_broker: Any) -> None:
    pass


def limit(settings: Any, **rates: str) -> None:
    settings.BUZZER_RATELIMITS = {**settings.BUZZER_RATELIMITS, **rates}


def test_past_the_session_limit_checkout_answers_a_429_page(client: Client, products: Any, settings: Any) -> None:
    limit(settings, checkout_session="2/m", checkout_ip="100/m")
    assert client.post("/orders/", FORM).status_code == 302  # the order starts the session
    assert client.post("/orders/", FORM).status_code == 302
    assert client.post("/orders/", FORM).status_code == 302  # the first had no session yet

    refused = client.post("/orders/", FORM)

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused["Content-Type"].startswith("text/html")
    assert "Too many orders from this browser" in refused.content.decode()
    assert Order.objects.count() == 3
    assert Client().post("/orders/", FORM).status_code == 302  # a new browser


def test_past_the_address_limit_every_browser_there_gets_429(products: Any, settings: Any) -> None:
    limit(settings, checkout_session="100/m", checkout_ip="2/m")
    for _ in range(2):
        assert Client().post("/orders/", FORM).status_code == 302

    refused = Client().post("/orders/", FORM)

    assert refused.status_code == 429
    assert "Too many orders from your network" in refused.content.decode()
    assert Client(REMOTE_ADDR="10.9.8.7").post("/orders/", FORM).status_code == 302


def test_declined_cards_count_as_attempts(client: Client, products: Any, settings: Any) -> None:
    limit(settings, checkout_ip="2/m")
    declined = {**FORM, "card": "4000000000000002"}
    assert client.post("/orders/", declined).status_code == 302  # back to the shop, with the reason
    assert client.post("/orders/", declined).status_code == 302

    assert client.post("/orders/", FORM).status_code == 429
