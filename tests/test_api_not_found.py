"""A path under /api/ that matches no route answers the API's JSON 404, also with DEBUG
on (`make run`), where Django would otherwise answer its HTML debug page."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("path", ["/api/nope", "/api/orders/not-a-uuid/", "/api/reports/1/"])
def test_an_unknown_api_path_answers_json_404(client: Client, debug: bool, path: str) -> None:
    with override_settings(DEBUG=debug):
        response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": "There is no such resource."}}


def test_a_missing_slash_under_api_is_still_redirected_with_debug_on(client: Client) -> None:
    with override_settings(DEBUG=True):
        response = client.get("/api/orders")
    assert response.status_code == 301
    assert response["Location"] == "/api/orders/"


def test_an_unknown_page_outside_api_keeps_djangos_debug_page(client: Client) -> None:
    with override_settings(DEBUG=True):
        response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
