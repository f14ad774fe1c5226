"""The favicon (linked from every page, and /favicon.ico answers it) and the API's docs
page at /api/docs/, built from the Python package's Swagger UI files, never a CDN."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db


def test_every_page_links_the_favicon(client: Client) -> None:
    for url in ("/", "/accounts/login/"):
        page = client.get(url).content.decode()
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page, url
    assert finders.find("favicon.svg")


def test_favicon_ico_redirects_to_the_icon(client: Client) -> None:
    response = client.get("/favicon.ico")

    assert response.status_code == 302  # the target's name changes with the icon in production
    assert response["Location"] == "/static/favicon.svg"
    assert "max-age=86400" in response["Cache-Control"]


def test_api_docs_page_serves_swagger_ui_from_local_static_files(client: Client) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    scripts = re.findall(r'<(?:script src|link rel="stylesheet" href)="([^"]+)"', page)
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in scripts
    assert all(src.startswith("/static/") for src in scripts), scripts  # nothing from elsewhere
    for src in scripts:
        assert finders.find(src.removeprefix("/static/")), src
    assert '"/api/openapi.json"' in page


def test_api_docs_page_answers_get_only(client: Client) -> None:
    assert client.post("/api/docs/").status_code == 405
