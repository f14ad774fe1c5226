"""Redis SIGKILLed (AOF everysec) while orders are placed and processed, then restarted:
orders keep being accepted, pages that need Redis say 503, and once Redis is back every
accepted order gets all its effects, none twice."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from jobs.models import Job
from orders import services as order_services
from orders.models import Order
from tests.faults.conftest import FaultStack, OrderLoad, job_counts, wait_for_effects
from tests.support import email
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.http import request
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

CLIENTS = 4


def staff_cookie(operator: Any) -> str:
    client = Client()
    client.force_login(operator)
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"


def test_orders_survive_a_redis_crash(stack: FaultStack, stocked: dict, api_key: str, operator: Any) -> None:
    email.delay_every(0.05)
    stack.scheduler()
    stack.workers(processes=1, threads=8)
    stack.workers(processes=1, threads=8)
    web = stack.web()
    cookie = staff_cookie(operator)
    load = OrderLoad(web, api_key, CLIENTS, pause=0.02)
    wait_until(lambda: len(email.sent()) >= 20, timeout=60, what="orders flowing through the workers")

    stack.redis.kill()
    killed_at = time.monotonic()
    time.sleep(1)
    probes = {}
    for path, headers in [
        ("/healthz", {}),
        ("/metrics", {}),
        ("/admin/jobs/dashboard/", {"Cookie": cookie}),
        ("/admin/jobs/job/", {"Cookie": cookie}),
    ]:
        sent = time.monotonic()
        status, _, body = request(web.url + path, headers=headers, timeout=30)
        probes[path] = (status, time.monotonic() - sent, body)
    time.sleep(max(0.0, 6 - (time.monotonic() - killed_at)))
    stack.redis.restart()
    restarted_at = time.monotonic()
    time.sleep(3)
    results = load.stop()

    down = [r for r in results if killed_at <= r[0] < restarted_at]
    accepted = [r for r in results if r[2] == 201]
    assert down and all(r[2] == 201 for r in down), sorted({r[2] for r in down})
    assert all(r[2] == 201 for r in results), sorted({r[2] for r in results})
    assert max(r[1] for r in down) < 2.0
    for path in ("/healthz", "/metrics", "/admin/jobs/dashboard/"):
        status, seconds, body = probes[path]
        assert status == 503 and seconds < 3, (path, status, seconds)
    assert "Redis" in str(probes["/admin/jobs/dashboard/"][2])
    # The job list needs only the database (and the staff session is valid there).
    assert probes["/admin/jobs/job/"][0] == 200 and "Select job to" in probes["/admin/jobs/job/"][2]

    accepted_ids = {r[3]["id"] for r in accepted}
    orders = list(Order.objects.filter(pk__in=accepted_ids))
    assert len(orders) == len(accepted_ids) == Order.objects.count()
    wait_until(
        lambda: not Job.objects.filter(status=Job.Status.PENDING).exists(), timeout=60, what="the outbox emptied"
    )
    outbox_drained = time.monotonic() - restarted_at
    effects = wait_for_effects(orders, timeout=150)
    done_in = time.monotonic() - restarted_at
    wait_until(
        lambda: order_jobs().filter(status=Job.Status.SUCCEEDED).count() == 3 * len(orders),
        timeout=120,
        what=f"every job row succeeded ({job_counts()})",
    )
    record(
        f"Redis SIGKILL: {len(accepted)} orders accepted ({len(down)} while Redis was down, slowest "
        f"{max(r[1] for r in down) * 1000:.0f} ms), 0 refused; /healthz, /metrics and the dashboard answered 503 "
        f"in < 3 s; outbox drained {outbox_drained:.0f} s after the restart; {effects['emails']}/{len(orders)} "
        f"orders got all their effects, {effects['duplicate_emails']} duplicates, {done_in:.0f} s after the restart"
    )


def test_a_job_that_fails_as_redis_dies_is_retried_once_redis_is_back(stack: FaultStack, stocked: dict) -> None:
    """The email job fails at the instant Redis is SIGKILLed: its retry cannot be sent
    (Dramatiq's Retries enqueues it into the dead Redis), and its message's ack waits for
    Redis to come back. Its row says `retrying`; once Redis is back the job runs again
    and the email goes out once, within the lost-message scan's bound."""
    lost_after, scan = 10, 2
    stack.scheduler(BUZZER_LOST_AFTER_SECONDS=str(lost_after), BUZZER_LOST_SCAN_SECONDS=str(scan))
    stack.workers(processes=1, threads=4)
    assert stack.redis.proc is not None
    email.kill_broker_on_send_to("doomed@example.com", stack.redis.proc.pid)
    order = order_services.place_order(
        email="doomed@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242"
    )
    wait_until(email.broker_killed_at, timeout=60, what="the doomed email's send, which kills Redis")
    stack.redis.kill()  # reaps the process the worker killed
    time.sleep(3)
    stack.redis.restart()
    restarted_at = time.monotonic()
    confirmation = Job.objects.get(actor_name="send_confirmation_email", object_id=str(order.pk))
    wait_until(
        lambda: Job.objects.get(pk=confirmation.pk).status == Job.Status.SUCCEEDED,
        timeout=lost_after + scan + 60,
        what=f"the doomed email's job to succeed (it is {Job.objects.get(pk=confirmation.pk).status})",
    )
    took = time.monotonic() - restarted_at
    time.sleep(2)  # a second delivery, if there were one, would show by now
    sent = [m for m in email.sent() if "doomed@example.com" in m["to"]]
    assert len(sent) == 1, sent
    confirmation.refresh_from_db()
    assert confirmation.attempts == 2
    record(
        f"Redis SIGKILLed as an email job failed (its retry unsendable): the job ran its second attempt "
        f"{took:.1f} s after Redis came back (lost-message scan: {lost_after} s + every {scan} s), one email"
    )
