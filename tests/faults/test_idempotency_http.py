"""100 clients posting the same order with the same `Idempotency-Key` at the same moment,
over real HTTP to gunicorn: one order, one set of jobs, and every other answer is the
first response replayed or a `409` to try again, never a second order or a `5xx`."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from jobs.models import Job
from orders.models import IdempotencyKey, Order
from tests.faults.conftest import FaultStack, wait_for_effects
from tests.support.data import order_body
from tests.support.figures import record
from tests.support.http import request
from tests.support.keys import key

pytestmark = pytest.mark.faults

CLIENTS = 100
KEY = "checkout-7f3a9c"


def queued_ids(stack: FaultStack) -> Counter[str]:
    """How many times each job was sent to the default queue (no worker runs yet)."""
    client = stack.redis.client()
    redis_ids = client.lrange(key("default"), 0, -1)
    payloads = client.hmget(key("default.msgs"), redis_ids) if redis_ids else []
    return Counter(json.loads(payload)["message_id"] for payload in payloads if payload)


def test_100_concurrent_posts_with_one_idempotency_key_make_one_order(
    stack: FaultStack, stocked: dict, api_key: str
) -> None:
    web = stack.web(workers=2, threads=8)
    url = f"{web.url}/api/orders/"
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": KEY}
    body = order_body(email="rush@example.com", items=[{"sku": "BUZ-001", "quantity": 1}])
    barrier = threading.Barrier(CLIENTS)

    def post(_: int) -> tuple[int, dict[str, str], Any]:
        barrier.wait()  # all 100 leave together
        return request(url, "POST", body, headers, timeout=60)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        answers = list(pool.map(post, range(CLIENTS)))

    statuses = Counter(status for status, _, _ in answers)
    assert not [status for status in statuses if status >= 500], statuses
    assert set(statuses) <= {201, 409}, statuses
    created = [(hdrs, doc) for status, hdrs, doc in answers if status == 201]
    originals = [doc for hdrs, doc in created if hdrs.get("Idempotent-Replayed") != "true"]
    replays = [doc for hdrs, doc in created if hdrs.get("Idempotent-Replayed") == "true"]
    conflicts = [doc for status, _, doc in answers if status == 409]
    assert len(originals) == 1, statuses
    assert all(doc == originals[0] for doc in replays)  # the first response, byte for byte as JSON
    assert all(hdrs["Location"] == f"/api/orders/{originals[0]['id']}/" for hdrs, _ in created)
    for doc in conflicts:
        assert doc["error"]["code"] == "idempotency_key_in_progress"
        assert doc["error"]["message"]

    order = Order.objects.get()
    assert str(order.id) == originals[0]["id"]
    jobs = list(Job.objects.all())
    assert sorted(job.actor_name for job in jobs) == ["record_analytics", "send_confirmation_email", "update_inventory"]
    assert {job.object_id for job in jobs} == {str(order.id)}
    assert [queued_ids(stack)[str(job.id)] for job in jobs] == [1, 1, 1]  # each sent to Redis once
    assert IdempotencyKey.objects.get().status == IdempotencyKey.Status.DONE

    # The same key with another body: refused, nothing created.
    status, _, doc = request(url, "POST", order_body(email="other@example.com"), headers)
    assert status == 422 and doc["error"]["code"] == "idempotency_key_reused", (status, doc)
    assert (Order.objects.count(), Job.objects.count(), IdempotencyKey.objects.count()) == (1, 3, 1)

    stack.workers(processes=1, threads=4)
    effects = wait_for_effects([order], timeout=60)
    record(
        f"Idempotency: {CLIENTS} concurrent POSTs, one key -> {Order.objects.count()} order, {len(jobs)} jobs, "
        f"{effects['emails']} email; answers: 1 x 201, {len(replays)} x 201 replayed (same body), "
        f"{len(conflicts)} x 409, 0 x 5xx; same key, other body -> 422, nothing created"
    )
