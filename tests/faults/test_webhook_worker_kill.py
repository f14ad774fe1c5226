"""A worker SIGKILLed in the middle of a webhook delivery: the event is still delivered
(maybe twice, always with the same webhook-id)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from orders import services as orders
from tests.faults.conftest import FaultStack
from tests.support.figures import record
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until
from webhooks import services
from webhooks.models import Delivery

pytestmark = pytest.mark.faults

FAST_RECOVERY = {"BUZZER_HEARTBEAT_SECONDS": "1", "BUZZER_WORKER_DEAD_AFTER_SECONDS": "3"}


def test_a_delivery_whose_worker_is_killed_mid_request_is_delivered_with_the_same_id(
    stack: FaultStack, stocked: dict
) -> None:
    receiver = Receiver().start()
    receiver.answer_next("hang")  # the first request is in flight when the worker dies
    try:
        services.create_endpoint(receiver.url)
        stack.scheduler(BUZZER_RECOVERY_INTERVAL_SECONDS="1", **FAST_RECOVERY)
        worker = stack.workers(processes=1, threads=2, queues=["webhooks"], **FAST_RECOVERY)
        orders.place_order(email="k@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242")
        wait_until(lambda: receiver.requests(), timeout=30, interval=0.05, what="the delivery to reach the receiver")
        os.kill(worker.worker_pids()[0], signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: Delivery.objects.filter(status="succeeded").exists(),
            timeout=45,
            what="the delivery after the kill",
        )
        after = time.monotonic() - killed_at
    finally:
        receiver.stop()
    delivery = Delivery.objects.select_related("event").get()
    got = receiver.requests()
    assert len(got) >= 2 and {r.headers["webhook-id"] for r in got} == {delivery.event.webhook_id}
    record(
        f"Webhook worker SIGKILLed mid-delivery: delivered {after:.1f} s after the kill, "
        f"{len(got)} requests with one webhook-id"
    )
