"""Redis stalls (CLIENT PAUSE 5000) while orders are being placed: the request path only
writes the outbox, so placement stays fast and nothing fails."""

from __future__ import annotations

import statistics
import time

import pytest

from orders.models import Order
from tests.faults.conftest import FaultStack, OrderLoad, wait_for_effects
from tests.support.figures import record

pytestmark = pytest.mark.faults

CLIENTS = 4


def test_orders_stay_fast_while_redis_is_paused(stack: FaultStack, stocked: dict, api_key: str) -> None:
    stack.scheduler()
    stack.workers(processes=1, threads=8)
    web = stack.web()
    load = OrderLoad(web, api_key, CLIENTS)
    time.sleep(2)
    paused_at = time.monotonic()
    stack.redis.pause(5000)
    time.sleep(7)
    results = load.stop()

    statuses = [status for _, _, status, _, _ in results]
    during = sorted(seconds for sent, seconds, _, _, _ in results if paused_at <= sent < paused_at + 5)
    everything = sorted(seconds for _, seconds, _, _, _ in results)
    p99_during = during[int(len(during) * 0.99)] if during else float("inf")
    p99 = everything[int(len(everything) * 0.99)]
    assert during, "no order was placed while Redis was paused"
    slowest = sorted(results, key=lambda r: -r[1])[:5]
    phases = [(round(sent - paused_at, 2), round(seconds, 2)) for sent, seconds, _, _, _ in slowest]
    assert all(status == 201 for status in statuses), sorted(set(statuses))
    assert p99 < 1.0 and p99_during < 1.0, (p99, p99_during, "slowest (sent after the pause began, s):", phases)

    effects = wait_for_effects(list(Order.objects.all()), timeout=90)
    record(
        f"CLIENT PAUSE 5000: {len(results)} orders ({len(during)} placed during the pause), all 201, no 5xx; "
        f"placement p50 {statistics.median(everything) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"p99 during the pause {p99_during * 1000:.0f} ms (bar 1 s); "
        f"{effects['emails']}/{effects['orders']} orders got all their effects once afterwards"
    )
