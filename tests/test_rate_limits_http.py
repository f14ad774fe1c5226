"""The limits over real HTTP, against gunicorn (two processes, as production runs it):
the counts are shared through Redis, the answers are what clients get on the wire, and
with Redis gone the limits step aside instead of failing requests."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from typing import Any

import pytest

from orders.models import ApiKey, Order
from orders.payments import CARD_OK
from tests.support.data import order_body
from tests.support.http import request
from tests.support.redis_server import free_port
from tests.support.web import WebProcess

pytestmark = pytest.mark.django_db(transaction=True)  # gunicorn reads what the test writes

LIMITS = {
    "BUZZER_RATELIMIT_API_ORDERS": "5/m",
    "BUZZER_RATELIMIT_LOGIN_USERNAME": "3/15m",
    "BUZZER_RATELIMIT_LOGIN_IP": "1000/m",
    "BUZZER_RATELIMIT_CHECKOUT_SESSION": "1000/m",
    "BUZZER_RATELIMIT_CHECKOUT_IP": "3/m",
}


@pytest.fixture
def web(real_broker: Any) -> Iterator[WebProcess]:
    process = WebProcess(workers=2, threads=4, **LIMITS)
    yield process
    process.stop()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 302 is an answer to look at


class Browser:
    """Form posts with a session and a CSRF token, over plain HTTP (the cookies are kept
    by hand: production marks them Secure, which a cookie jar would not send back)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.opener = urllib.request.build_opener(_NoRedirects)

    def send(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, Any, str]:
        data = None
        if form is not None:
            data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": self.cookies["csrftoken"]}).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - local test server
        req.add_header("Cookie", "; ".join(f"{name}={value}" for name, value in self.cookies.items()))
        try:
            with self.opener.open(req, timeout=20) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        for header in headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return status, headers, body.decode(errors="replace")

    def post(self, path: str, form: dict[str, str]) -> tuple[int, Any, str]:
        if "csrftoken" not in self.cookies:
            self.send("GET", path if path.startswith("/accounts/") else "/")
        return self.send("POST", path, form)


def _rate_limited(web: WebProcess) -> dict[str, float]:
    status, _, text = request(f"{web.url}/metrics")
    assert status == 200, text
    return {m[1]: float(m[2]) for m in re.finditer(r'^buzzer_rate_limited_total\{scope="(\w+)"\} (\S+)$', text, re.M)}


def test_a_key_gets_exactly_its_limit_across_processes_then_json_429s(web: WebProcess, products: Any) -> None:
    _, raw = ApiKey.issue("busy")
    _, other = ApiKey.issue("other")

    def post(_: int) -> tuple[int, dict[str, str], Any]:
        return request(f"{web.url}/api/orders/", "POST", order_body(), {"Authorization": f"Bearer {raw}"})

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(post, range(12)))

    assert Counter(status for status, _, _ in answers) == {201: 5, 429: 7}
    for status, headers, body in answers:
        if status == 429:
            assert 0 < int(headers["Retry-After"]) <= 60
            assert headers["Content-Type"] == "application/json"
            assert body["error"]["code"] == "rate_limited" and "too many orders" in body["error"]["message"]
    assert Order.objects.count() == 5
    status, _, _ = request(f"{web.url}/api/orders/", "POST", order_body(), {"Authorization": f"Bearer {other}"})
    assert status == 201
    assert _rate_limited(web)["api_orders"] == 7


def test_a_username_is_locked_out_over_http(web: WebProcess, django_user_model: Any) -> None:
    django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    browser = Browser(web.url)
    for _ in range(3):
        status, _, page = browser.post("/accounts/login/", {"username": "ada", "password": "wrong"})
        assert status == 200 and "didn't match" in page

    status, headers, page = browser.post("/accounts/login/", {"username": "ada", "password": "pw-for-tests-only"})

    assert status == 429
    assert headers["Content-Type"].startswith("text/html") and 0 < int(headers["Retry-After"]) <= 900
    assert "Too many failed log-ins for this username" in page
    status, _, _ = Browser(web.url).post("/accounts/login/", {"username": "ada", "password": "pw-for-tests-only"})
    assert status == 429  # another browser, same username: still locked
    assert _rate_limited(web)["login_username"] == 2


def test_checkout_is_refused_past_the_address_limit_over_http(web: WebProcess, products: Any) -> None:
    browser = Browser(web.url)
    form = {"email": "ada@example.com", "qty-BUZ-001": "1", "card": CARD_OK, "priority": "standard"}
    assert [browser.post("/orders/", form)[0] for _ in range(3)] == [302, 302, 302]

    status, headers, page = browser.post("/orders/", form)

    assert status == 429 and int(headers["Retry-After"]) > 0
    assert "Too many orders from your network" in page
    assert Order.objects.count() == 3


def test_without_redis_the_limits_step_aside_and_every_request_is_served(products: Any, django_user_model: Any) -> None:
    django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    _, raw = ApiKey.issue("busy")
    web = WebProcess(workers=1, threads=4, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", **LIMITS)
    try:
        statuses = [
            request(f"{web.url}/api/orders/", "POST", order_body(), {"Authorization": f"Bearer {raw}"})[0]
            for _ in range(8)
        ]
        browser = Browser(web.url)
        logins = [browser.post("/accounts/login/", {"username": "ada", "password": "wrong"})[0] for _ in range(5)]
        form = {"email": "ada@example.com", "qty-BUZ-001": "1", "card": CARD_OK}
        checkouts = [browser.post("/orders/", form)[0] for _ in range(5)]
    finally:
        web.stop()

    assert statuses == [201] * 8
    assert logins == [200] * 5
    assert checkouts == [302] * 5
    assert "Rate limits are not enforced" in web.log_path.read_text()
