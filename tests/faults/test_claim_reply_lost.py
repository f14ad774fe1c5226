"""The reply of a worker's claim call is lost: the call ran in Redis, so its claims are
taken in that worker's name, but the connection dropped before the answer came back (a
failover, a reset). The worker must still run those jobs, once: its next consumer settles
the call (which claims it took) and gives them back before it puts the messages back.
Without that, each later delivery met "claimed by this very worker" and was skipped, for
as long as the worker lived."""

from __future__ import annotations

import pytest

from jobs.claims import _CLAIM_SCRIPT
from jobs.models import Job
from tests.faults.conftest import FaultStack, all_effects_once, wait_for_effects
from tests.faults.test_worker_kill import place_orders
from tests.support import email
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.redis_proxy import RedisProxy
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

ORDERS = 200
CUTS = 3


def test_jobs_whose_claim_reply_was_lost_still_run_once(stack: FaultStack, stocked: dict) -> None:
    orders = place_orders(ORDERS)
    assert order_jobs().filter(status=Job.Status.ENQUEUED).count() == 3 * ORDERS
    # Loaded before any worker asks, so that the first call the proxy cuts is a claim
    # that runs, not one that Redis refuses for want of the script.
    sha = stack.redis.client().script_load(_CLAIM_SCRIPT)
    proxy = RedisProxy(stack.redis.port, marker=sha.encode(), cuts=CUTS)
    try:
        email.delay_every(0.01)
        stack.scheduler()
        worker = stack.workers(processes=1, threads=8, redis_url=proxy.url())
        wait_until(lambda: proxy.cut == CUTS, timeout=60, what=f"{CUTS} claim replies lost")
        effects = wait_for_effects(orders, timeout=60)
        wait_until(
            lambda: order_jobs().filter(status=Job.Status.SUCCEEDED).count() == 3 * ORDERS,
            timeout=30,
            what="every order job's row succeeded",
        )
    finally:
        proxy.close()
    assert all_effects_once(effects), effects
    assert "Consumer encountered" in worker.output_all(), "no consumer saw its connection drop"
    record(
        f"Claim replies lost ({CUTS} of a worker's claim calls ran in Redis, their connection cut before the "
        f"answer): {effects['emails']}/{ORDERS} orders got all their effects, {effects['duplicate_emails']} "
        "duplicates"
    )
