"""API keys may expire (an expired key is refused with 401 like an unknown one, saying it
expired) and note when they were last used, written at most once a minute per key."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import ApiKey
from tests.support.data import order_body

pytestmark = pytest.mark.django_db


def test_an_expired_key_gets_401_saying_it_expired(api: Any, products: Any, stub_broker: Any) -> None:
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    for response in (
        api.post("/api/orders/", order_body()),
        api.get("/api/reports/00000000-0000-0000-0000-000000000000/"),
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["code"] == "unauthorized" and "expired on" in error["message"]


def test_a_key_before_its_expiry_works(api: Any, products: Any, stub_broker: Any) -> None:
    ApiKey.objects.update(expires_at=timezone.now() + timedelta(minutes=5))

    assert api.post("/api/orders/", order_body()).status_code == 201


def test_a_revoked_key_is_refused_like_an_unknown_one_even_if_expired(api: Any) -> None:
    ApiKey.objects.update(active=False, expires_at=timezone.now() - timedelta(days=1))

    response = api.get("/api/reports/00000000-0000-0000-0000-000000000000/")

    assert response.status_code == 401 and "expired" not in response.json()["error"]["message"]


def test_last_used_at_is_written_on_first_use_then_at_most_once_a_minute(api: Any) -> None:
    url = "/api/reports/00000000-0000-0000-0000-000000000000/"
    assert ApiKey.objects.get().last_used_at is None

    api.get(url)
    first = ApiKey.objects.get().last_used_at
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            api.get(url)

    assert first is not None and timezone.now() - first < timedelta(seconds=5)
    assert ApiKey.objects.get().last_used_at == first
    assert not [q for q in queries.captured_queries if q["sql"].upper().startswith("UPDATE")]

    ApiKey.objects.update(last_used_at=timezone.now() - timedelta(seconds=61))
    api.get(url)
    assert timezone.now() - ApiKey.objects.get().last_used_at < timedelta(seconds=5)


def test_the_admin_shows_expiry_and_last_use(admin_client: Any, api: Any) -> None:
    api.get("/api/reports/00000000-0000-0000-0000-000000000000/")
    key = ApiKey.objects.get()

    listing = admin_client.get("/admin/orders/apikey/").content.decode()
    page = admin_client.get(f"/admin/orders/apikey/{key.pk}/change/").content.decode()

    assert "Expires at" in listing and "Last used at" in listing
    assert 'name="expires_at_0"' in page and "Last used at" in page and 'name="last_used_at' not in page


def test_create_api_key_takes_an_expiry_in_days() -> None:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "partner", "--expires-in-days", "30", stdout=out, stderr=err)

    key = ApiKey.objects.get(name="partner")
    assert key.expires_at is not None
    assert abs(key.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert out.getvalue().strip().startswith("bz_") and "expires on" in err.getvalue()
    call_command("create_api_key", "forever", stdout=StringIO())
    assert ApiKey.objects.get(name="forever").expires_at is None
    with pytest.raises(CommandError):
        call_command("create_api_key", "nope", "--expires-in-days", "0", stdout=StringIO())
