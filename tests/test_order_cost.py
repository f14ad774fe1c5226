"""What one order costs on the real stack (a real COMMIT, the real Redis broker): at most
8 SQL statements, one round trip to the broker for all of its jobs and one for its rate
limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import pytest
import redis
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import jobs
from jobs import services
from jobs.models import Job
from orders.models import Order
from tests.support.data import order_body

pytestmark = pytest.mark.django_db(transaction=True)

MAX_STATEMENTS = 8


class RoundTrips:
    """Writes to a Redis socket (a pipeline is one), split into the broker's and the rest."""

    def __init__(self) -> None:
        self.broker: list[Any] = []
        self.other: list[Any] = []


@contextmanager
def count_redis_round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    trips = RoundTrips()
    pool = services.sender().client.connection_pool
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        (trips.broker if self in pool._in_use_connections else trips.other).append(command)
        send(self, command, check_health)

    with monkeypatch.context() as patch:
        patch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
        yield trips


def record_marks(monkeypatch: pytest.MonkeyPatch, hold: threading.Event | None = None) -> list[list[Any]]:
    """The batches the marker thread writes, one `UPDATE … enqueued` each (with `hold`,
    the first waits for it to be set)."""
    batches: list[list[Any]] = []
    mark = services._mark_enqueued

    def recording(ids: list[Any]) -> None:
        batches.append(list(ids))
        if hold is not None and len(batches) == 1:
            assert hold.wait(10)
        mark(ids)

    monkeypatch.setattr(services, "_mark_enqueued", recording)
    return batches


def queued(broker: dramatiq.Broker, queue: str = "default") -> int:
    return broker.client.llen(f"{broker.namespace}:{queue}")


def test_one_order_costs_at_most_8_statements_one_broker_and_one_rate_limit_round_trip(
    api, products, real_broker, monkeypatch
):
    api.post("/api/orders/", order_body())  # warm: the API key's last use, Dramatiq's Lua limits (once per process)

    with count_redis_round_trips(monkeypatch) as trips, CaptureQueriesContext(connection) as queries:
        response = api.post("/api/orders/", order_body(email="second@example.com"))

    assert response.status_code == 201
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= MAX_STATEMENTS, "\n".join(statements)
    # One write transaction: the jobs are marked enqueued by the marker thread, not the request.
    assert not [sql for sql in statements if sql.startswith("UPDATE")], "\n".join(statements)
    assert len(trips.broker) == 1  # the three jobs, pipelined
    assert len(trips.other) == 1  # the API key's rate limit: one script call
    assert services.flush_marks()
    order = Order.objects.get(email="second@example.com")
    assert set(Job.objects.filter(object_id=str(order.id)).values_list("status", flat=True)) == {"enqueued"}
    assert queued(real_broker) == 6


def test_the_idempotency_key_adds_two_statements(api, products, real_broker, monkeypatch):
    api.post("/api/orders/", order_body())

    with CaptureQueriesContext(connection) as queries:
        response = api.post("/api/orders/", order_body(email="k@example.com"), **{"Idempotency-Key": "k-1"})

    assert response.status_code == 201
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= MAX_STATEMENTS + 2, "\n".join(statements)  # the key's INSERT, its response's UPDATE


def test_jobs_of_one_transaction_go_in_one_round_trip_and_one_update(real_broker, monkeypatch):
    """One round trip; the marks are left to the marker thread, which writes them with one
    UPDATE on its own connection."""
    jobs.enqueue("send_confirmation_email", order_id="warm")  # connects (HELLO, CLIENT SETINFO: once)
    Job.objects.all().delete()
    real_broker.client.flushdb()

    marks = record_marks(monkeypatch)
    with count_redis_round_trips(monkeypatch) as trips, CaptureQueriesContext(connection) as queries:
        with transaction.atomic():
            written = [jobs.enqueue("send_confirmation_email", order_id=str(n)) for n in range(5)]
            written += jobs.publish("order.placed", order_id="x")

    assert len(trips.broker) == 1
    assert not [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert services.flush_marks()
    assert [sorted(batch) for batch in marks] == [sorted(job.id for job in written)]  # one UPDATE
    assert queued(real_broker) == 8
    assert set(Job.objects.values_list("status", flat=True)) == {"enqueued"}
    sent = {
        dramatiq.Message.decode(raw).message_id
        for raw in real_broker.client.hvals(f"{real_broker.namespace}:default.msgs")
    }
    assert sent == {str(job.id) for job in written}


def test_a_job_written_in_a_rolled_back_savepoint_is_never_sent(real_broker):
    with transaction.atomic():
        kept = jobs.enqueue("send_confirmation_email", order_id="kept")
        try:
            with transaction.atomic():
                jobs.enqueue("send_confirmation_email", order_id="rolled-back")
                raise RuntimeError("undo the savepoint")
        except RuntimeError:
            pass
        later = jobs.enqueue("send_confirmation_email", order_id="later")

    sent = {
        dramatiq.Message.decode(raw).message_id
        for raw in real_broker.client.hvals(f"{real_broker.namespace}:default.msgs")
    }
    assert sent == {str(kept.id), str(later.id)}
    assert Job.objects.count() == 2


def test_redis_that_forgot_the_script_gets_it_again(real_broker):
    real_broker.client.script_flush()  # a restarted Redis knows no scripts

    with transaction.atomic():
        written = jobs.publish("order.placed", order_id="x")

    assert queued(real_broker) == 3
    assert services.flush_marks()
    assert set(Job.objects.filter(pk__in=[j.pk for j in written]).values_list("status", flat=True)) == {"enqueued"}


def test_jobs_redis_refuses_stay_pending_for_the_sweep(real_broker, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(redis.client.Pipeline, "execute", refuse)
    with transaction.atomic():
        jobs.publish("order.placed", order_id="x")
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}

    monkeypatch.undo()
    assert services.sweep_outbox(older_than=0) == 3
    assert queued(real_broker) == 3
    assert set(Job.objects.values_list("status", flat=True)) == {"enqueued"}


def test_a_key_already_taken_returns_the_first_job_and_sends_nothing_new(real_broker):
    with transaction.atomic():
        first = jobs.enqueue("send_confirmation_email", key="once", order_id="a")
    with transaction.atomic():
        again = jobs.enqueue("send_confirmation_email", key="once", order_id="b")

    assert again.pk == first.pk and again.kwargs == {"order_id": "a"}
    assert Job.objects.count() == 1
    assert queued(real_broker) == 1


def test_marks_sent_while_an_update_runs_go_in_the_next_one(real_broker, monkeypatch):
    hold = threading.Event()
    marks = record_marks(monkeypatch, hold)
    with transaction.atomic():
        first = jobs.enqueue("send_confirmation_email", order_id="first")
    deadline = time.monotonic() + 10
    while not marks and time.monotonic() < deadline:  # the thread has taken the first mark
        time.sleep(0.01)
    later = []
    for n in range(3):  # three commits while the first UPDATE is held
        with transaction.atomic():
            later.append(jobs.enqueue("send_confirmation_email", order_id=str(n)))
    hold.set()

    assert services.flush_marks()
    assert [sorted(batch) for batch in marks] == [[first.id], sorted(job.id for job in later)]
    assert set(Job.objects.values_list("status", flat=True)) == {"enqueued"}


def test_marks_still_waiting_at_exit_are_written_by_the_exiting_thread(real_broker, monkeypatch):
    hold = threading.Event()
    marks = record_marks(monkeypatch, hold)
    with transaction.atomic():
        jobs.enqueue("send_confirmation_email", order_id="first")
    deadline = time.monotonic() + 10
    while not marks and time.monotonic() < deadline:  # the thread is held in its first UPDATE
        time.sleep(0.01)
    with transaction.atomic():
        later = jobs.enqueue("send_confirmation_email", order_id="later")

    services._marker.write_now(wait=0.1)  # what atexit runs

    assert marks[-1] == [later.id]
    assert Job.objects.get(pk=later.pk).status == "enqueued"
    hold.set()
    assert services.flush_marks()


def test_an_order_stands_when_marking_its_sent_jobs_fails(api, products, real_broker, monkeypatch):
    """After COMMIT the order exists: a failed `UPDATE … enqueued` (a deadlock, the database
    gone) leaves the jobs pending for the sweep and the client gets its 201."""
    from django.db import OperationalError

    def refuse_the_mark(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("UPDATE") and "enqueued" in str(params).lower():
            raise OperationalError("deadlock detected")
        return execute(sql, params, many, context)

    mark = services._mark_enqueued

    def refused(ids: list[Any]) -> None:  # in the marker thread, on its connection
        with connection.execute_wrapper(refuse_the_mark):
            mark(ids)

    with monkeypatch.context() as patch:
        patch.setattr(services, "_mark_enqueued", refused)
        response = api.post("/api/orders/", order_body())
        assert services.flush_marks()

    assert response.status_code == 201
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}
    assert queued(real_broker) == 3  # sent; the sweep sends them again, the claim skips the copy
