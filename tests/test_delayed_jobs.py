"""Delayed jobs: `jobs.enqueue(..., delay=..., eta=...)` waits in its row as `scheduled`
and is handed to the broker when due, once."""

from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

import jobs
from jobs.models import Job
from jobs.services import flush_marks, next_due, release_due
from orders.models import Order
from tests.support.stub import drain

pytestmark = pytest.mark.django_db(transaction=True)


def order() -> Order:
    return Order.objects.create(email="ada@example.com", total="1.00")


def test_a_delayed_job_waits_scheduled_then_runs_once_when_due(stub_broker, stub_worker):
    target = order()
    with transaction.atomic():
        job = jobs.enqueue("send_confirmation_email", obj=target, delay=timedelta(minutes=5), order_id=str(target.pk))
    job.refresh_from_db()
    assert job.status == "scheduled"
    assert timedelta(minutes=4, seconds=59) < job.due_at - job.created_at <= timedelta(minutes=5, seconds=1)
    assert next_due() == job.due_at

    assert release_due() == 0  # not before its time
    drain(stub_broker, stub_worker)
    assert Job.objects.get(pk=job.pk).status == "scheduled"
    assert mail.outbox == []

    Job.objects.filter(pk=job.pk).update(due_at=timezone.now() - timedelta(seconds=1))  # its time has come
    assert release_due() == 1
    assert release_due() == 0  # released once
    drain(stub_broker, stub_worker)
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert len(mail.outbox) == 1
    assert next_due() is None


def test_eta_and_delay_in_seconds(stub_broker):
    when = timezone.now() + timedelta(hours=1)
    with transaction.atomic():
        by_eta = jobs.enqueue("send_confirmation_email", eta=when, order_id="a")
        by_seconds = jobs.enqueue("send_confirmation_email", delay=90, order_id="b")
        now = jobs.enqueue("send_confirmation_email", delay=0, order_id="c")
        past = jobs.enqueue("send_confirmation_email", eta=timezone.now() - timedelta(seconds=5), order_id="d")
    assert (by_eta.status, by_eta.due_at) == ("scheduled", when)
    assert by_seconds.status == "scheduled"
    assert 89 < (by_seconds.due_at - timezone.now()).total_seconds() <= 90
    assert flush_marks()
    assert {Job.objects.get(pk=j.pk).status for j in (now, past)} == {"enqueued"}  # due already: sent at commit


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"delay": 5, "eta": timezone.now() + timedelta(hours=1)}, "not both"),
        ({"eta": datetime(2030, 1, 1, 12, 0)}, "aware"),
        ({"delay": -1}, "negative"),
    ],
)
def test_bad_delays_are_refused_and_write_nothing(stub_broker, kwargs, message):
    with pytest.raises(ValueError, match=message):
        jobs.enqueue("send_confirmation_email", order_id="x", **kwargs)
    assert not Job.objects.exists()


def test_a_delayed_job_rolled_back_with_its_transaction_never_exists(stub_broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.enqueue("send_confirmation_email", delay=1, order_id="x")
        raise RuntimeError("the business change failed")
    assert not Job.objects.exists()
