"""Log-in lockout: failed log-ins count per username and per address (on the site's page
and the admin's alike); past the limit the log-in is refused with 429 and Retry-After,
even with the right password, until the window ends. Successful log-ins count nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from limits import services

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-only"


@pytest.fixture
def ada(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ada", password=PASSWORD)


def login(client: Client, username: str, password: str, path: str = "/accounts/login/") -> Any:
    return client.post(path, {"username": username, "password": password})


def limit(settings: Any, **rates: str) -> None:
    settings.BUZZER_RATELIMITS = {**settings.BUZZER_RATELIMITS, **rates}


def test_a_username_is_locked_out_after_its_failed_logins_even_with_the_right_password(
    client: Client, ada: Any, settings: Any
) -> None:
    limit(settings, login_username="3/15m")
    for _ in range(3):
        assert "didn't match" in login(client, "ada", "wrong").content.decode()

    refused = login(client, "ada", PASSWORD)

    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 15 * 60
    assert refused["Content-Type"].startswith("text/html")
    assert "Too many failed log-ins for this username" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_locked_out_username_does_not_lock_out_others_from_the_same_address(
    client: Client, ada: Any, django_user_model: Any, settings: Any
) -> None:
    django_user_model.objects.create_user("grace", password=PASSWORD)
    limit(settings, login_username="3/15m")
    for _ in range(3):
        login(client, "ada", "wrong")

    assert login(client, "grace", PASSWORD).status_code == 302


def test_the_username_is_counted_whatever_its_case_and_spaces(client: Client, ada: Any, settings: Any) -> None:
    limit(settings, login_username="2/15m")
    login(client, "ADA", "wrong")
    login(client, " ada ", "wrong")

    assert login(client, "ada", PASSWORD).status_code == 429


def test_an_address_is_locked_out_after_failed_logins_over_many_usernames(
    client: Client, ada: Any, settings: Any
) -> None:
    limit(settings, login_ip="4/15m", login_username="100/15m")
    for n in range(4):
        assert login(client, f"guess{n}", "wrong").status_code == 200

    refused = login(client, "ada", PASSWORD)
    elsewhere = login(Client(REMOTE_ADDR="10.1.2.3"), "ada", PASSWORD)

    assert refused.status_code == 429
    assert "Too many failed log-ins from your network" in refused.content.decode()
    assert elsewhere.status_code == 302


def test_the_admin_login_counts_and_is_refused_like_the_site_login(client: Client, ada: Any, settings: Any) -> None:
    limit(settings, login_username="2/15m")
    assert login(client, "ada", "wrong", "/admin/login/").status_code == 200
    assert login(client, "ada", "wrong").status_code == 200

    assert login(client, "ada", PASSWORD, "/admin/login/").status_code == 429
    assert login(client, "ada", PASSWORD).status_code == 429


def test_successful_logins_count_nothing(ada: Any, settings: Any) -> None:
    limit(settings, login_username="2/15m", login_ip="2/15m")
    for _ in range(5):
        client = Client()
        assert login(client, "ada", PASSWORD).status_code == 302


def test_the_login_page_itself_is_never_refused(client: Client, ada: Any, settings: Any) -> None:
    limit(settings, login_username="1/15m", login_ip="1/15m")
    login(client, "ada", "wrong")

    assert client.get("/accounts/login/").status_code == 200


def test_behind_a_proxy_the_address_is_the_last_one_the_proxy_wrote(rf: Any, settings: Any) -> None:
    settings.BUZZER_RATELIMIT_IP_HEADER = "X-Forwarded-For"
    forwarded = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7", REMOTE_ADDR="10.0.0.1")
    forged = rf.get("/", HTTP_X_FORWARDED_FOR="not an address", REMOTE_ADDR="10.0.0.1")

    assert services.client_ip(forwarded) == "203.0.113.7"
    assert services.client_ip(forged) == "10.0.0.1"
    settings.BUZZER_RATELIMIT_IP_HEADER = ""
    assert services.client_ip(forwarded) == "10.0.0.1"
