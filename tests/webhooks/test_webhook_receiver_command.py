"""`manage.py webhook_receiver`'s check: a request signed by the `standardwebhooks`
package from PyPI verifies with the endpoint's secret, found by the receiver's port;
a tampered body, an old timestamp or another secret do not."""

import json
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from webhooks import services, signing
from webhooks.management.commands.webhook_receiver import endpoint_secrets, verify

pytestmark = pytest.mark.django_db


def signed_by_the_library(secret: str, body: bytes, at: float | None = None) -> dict[str, str]:
    stamp = datetime.fromtimestamp(at or time.time(), tz=timezone.utc)
    return {
        "webhook-id": "msg_0123",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_0123", stamp, body.decode()),
    }


def test_the_receiver_verifies_with_the_secret_of_the_endpoint_at_its_port():
    endpoint = services.create_endpoint("http://127.0.0.1:9000/hooks")
    services.create_endpoint("http://127.0.0.1:9001/hooks")  # another port: not its secret
    body = json.dumps({"type": "order.placed", "data": {"id": "x"}}).encode()
    headers = signed_by_the_library(endpoint.secret, body)

    assert endpoint_secrets(9000) == [endpoint.secret]
    assert verify(endpoint_secrets(9000), headers, body)
    assert not verify(endpoint_secrets(9001), headers, body)
    assert not verify([endpoint.secret], headers, body + b" ")
    assert not verify([endpoint.secret], signed_by_the_library(endpoint.secret, body, time.time() - 3600), body)
    assert not verify([signing.new_secret()], headers, body)
