"""The order flow end to end: real HTTP, real Redis, real `rundramatiq` processes."""

import pytest
import redis
from django.conf import settings
from django.db import transaction

import jobs
from jobs.models import Effect, Job
from orders.models import DailySales, Order, Product
from tests.support import email
from tests.support.data import order_body, order_jobs
from tests.support.http import request
from tests.support.keys import key
from tests.support.waiting import wait_until
from tests.support.workers import scheduler_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def place(live_server, api_key, body, **headers):
    return request(f"{live_server.url}/api/orders/", "POST", body, {"Authorization": f"Bearer {api_key}", **headers})


def all_jobs_finished(count):
    def check():
        return order_jobs().filter(status__in=Job.FINISHED).count() == count

    return check


def test_fifty_orders_get_all_their_side_effects_exactly_once(live_server, api_key, products, worker_factory):
    worker_factory(processes=2, threads=4)
    quantities = [1 + i % 3 for i in range(50)]

    for i, quantity in enumerate(quantities):
        status, _, doc = place(
            live_server,
            api_key,
            order_body(email=f"c{i}@example.com", items=[{"sku": "BUZ-001", "quantity": quantity}]),
        )
        assert status == 201, doc

    wait_until(all_jobs_finished(150), timeout=90, what="150 jobs to finish")
    assert Job.objects.filter(status="succeeded").count() == 150
    assert set(Job.objects.values_list("attempts", flat=True)) == {1}
    sent = email.sent()
    assert len(sent) == 50
    assert len({m["id"] for m in sent}) == 50
    assert sorted(m["to"][0] for m in sent) == sorted(f"c{i}@example.com" for i in range(50))
    assert Product.objects.get(sku="BUZ-001").stock == 1000 - sum(quantities)
    sales = DailySales.objects.get()
    assert (sales.orders, sales.items) == (50, sum(quantities))


def test_email_failing_twice_then_succeeding_ends_succeeded_with_three_attempts(
    live_server, api_key, products, worker_factory
):
    worker_factory(processes=1, threads=2)
    email.fail_next(2)

    status, _, doc = place(live_server, api_key, order_body())
    assert status == 201

    job = Job.objects.get(actor_name="send_confirmation_email")
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "succeeded", timeout=60, what="the email job")
    job.refresh_from_db()
    assert job.attempts == 3
    assert "injected failure" in job.last_error
    assert len(email.sent()) == 1
    assert Effect.objects.filter(key=f"email:order-confirmation:{doc['id']}").count() == 1


def test_rolled_back_order_leaves_no_jobs_and_no_messages(real_broker, products):
    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(email="x@example.com", total=1)
        jobs.publish("order.placed", obj=order, order_id=str(order.id))
        raise RuntimeError("payment table exploded")

    client = redis.Redis.from_url(settings.REDIS_URL)
    assert Job.objects.count() == 0
    assert Order.objects.count() == 0
    for queue_name in settings.BUZZER_QUEUES:
        assert client.llen(key(f"{queue_name}")) == 0
        assert client.hlen(key(f"{queue_name}.msgs")) == 0


def test_jobs_never_dispatched_are_sent_by_the_scheduler_sweep(products, worker_factory, monkeypatch):
    # The process "dies" between COMMIT and the send: the jobs are written, never dispatched.
    monkeypatch.setattr("jobs.services.dispatch", lambda jobs: 0)
    with transaction.atomic():
        order = Order.objects.create(email="crash@example.com", total=1)
        jobs.publish("order.placed", obj=order, order_id=str(order.id))
    monkeypatch.undo()
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}

    worker_factory(processes=1, threads=2)
    with scheduler_process(BUZZER_SWEEP_AFTER_SECONDS="0.5", BUZZER_SWEEP_INTERVAL_SECONDS="0.5") as scheduler:
        wait_until(all_jobs_finished(3), timeout=60, what="the swept jobs to finish")
    assert scheduler.returncode == 0
    assert set(order_jobs().values_list("status", flat=True)) == {"succeeded"}
