"""The SSRF guard: private, loopback, link-local, multicast, reserved and unspecified
addresses are refused, also behind a name and as IPv4-mapped IPv6."""

import socket

import pytest
from django.core.exceptions import ValidationError

from webhooks import services
from webhooks.addresses import AddressRefused, check

REFUSED = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://[::1]/hook",
    "http://10.0.0.7/hook",
    "http://172.16.5.4/hook",
    "http://172.31.255.255/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://100.64.0.1/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://240.0.0.1/hook",
    "http://localhost/hook",
    "http://internal.example/hook",  # resolves to 10.1.2.3 below
]


@pytest.fixture(autouse=True)
def _names(monkeypatch):
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        answers = {"internal.example": "10.1.2.3", "public.example": "93.184.215.14", "mixed.example": None}
        if host in answers:
            if answers[host] is None:
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.0.5", port)),
                ]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize("url", REFUSED)
def test_private_and_special_addresses_are_refused(url):
    with pytest.raises(AddressRefused, match="not a public address"):
        check(url, allow_private=False, require_https=False)


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    with pytest.raises(AddressRefused, match=r"192\.168\.0\.5"):
        check("http://mixed.example/", allow_private=False, require_https=False)


def test_a_public_name_is_accepted_and_the_checked_address_is_the_one_to_connect_to():
    target = check("https://public.example:8443/in?x=1", allow_private=False, require_https=True)
    assert (target.host, target.port, target.path, target.address) == (
        "public.example",
        8443,
        "/in?x=1",
        "93.184.215.14",
    )


@pytest.mark.parametrize("url", ["ftp://public.example/", "file:///etc/passwd", "gopher://public.example/", "//x"])
def test_only_http_and_https(url):
    with pytest.raises(AddressRefused):
        check(url, allow_private=True, require_https=False)


def test_production_requires_https():
    with pytest.raises(AddressRefused, match="https"):
        check("http://public.example/", allow_private=False, require_https=True)


def test_credentials_in_the_url_are_refused():
    with pytest.raises(AddressRefused, match="credentials"):
        check("https://user:pw@public.example/", allow_private=False, require_https=True)


def test_allow_private_lets_a_local_receiver_in():
    assert check("http://127.0.0.1:8001/hook", allow_private=True, require_https=False).address == "127.0.0.1"


def test_saving_an_endpoint_checks_its_url(db, settings):
    settings.BUZZER_WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError, match="not a public address"):
        services.create_endpoint("http://169.254.169.254/")
    assert services.create_endpoint("http://public.example/hook").url == "http://public.example/hook"


def test_the_check_runs_again_at_send_time(db, settings, receiver, quick_schedule):
    endpoint = services.create_endpoint(receiver.url)  # allowed when it was saved
    settings.BUZZER_WEBHOOKS_ALLOW_PRIVATE = False
    delivery = services.send_test(endpoint)
    with pytest.raises(services.DeliveryFailed, match="not a public address"):
        services.deliver(str(delivery.pk))
    delivery.refresh_from_db()
    assert receiver.requests() == []
    assert delivery.status == "retrying" and "not a public address" in delivery.last_error
