"""Signatures per Standard Webhooks, checked with the `standardwebhooks` package from
PyPI (not Buzzer's code) and with an HMAC written here from the specification."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhooks import signing


def spec_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed(secrets: list[str]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "order.placed", "timestamp": "2026-11-30T05:00:00+00:00", "data": {"id": "x"}}).encode()
    return body, signing.headers(secrets, "msg_0123abcd", int(time.time()), body)


def test_a_new_secret_is_whsec_and_base64_of_24_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24


def test_the_standardwebhooks_package_verifies_a_delivery():
    secret = signing.new_secret()
    body, headers = signed([secret])
    assert Webhook(secret).verify(body, headers)["data"] == {"id": "x"}


def test_the_signature_is_the_specifications_hmac():
    secret = signing.new_secret()
    body, headers = signed([secret])
    assert headers["webhook-id"] == "msg_0123abcd"
    expected = spec_signature(secret, headers["webhook-id"], headers["webhook-timestamp"], body)
    assert headers["webhook-signature"] == expected


def test_a_tampered_body_or_another_secret_is_refused():
    secret = signing.new_secret()
    body, headers = signed([secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b'"x"', b'"y"'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_during_a_rotation_a_receiver_holding_either_secret_accepts():
    old, new = signing.new_secret(), signing.new_secret()
    body, headers = signed([new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers)
    assert Webhook(new).verify(body, headers)
