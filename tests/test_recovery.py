"""Stalled jobs: a running job whose worker stopped beating is shown as such and put
back in its queue by the recovery (real Redis)."""

import time
from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone

from jobs import recovery
from jobs.models import Job
from jobs.services import build_message

pytestmark = pytest.mark.django_db(transaction=True)


def beat(broker, worker, age_s=0.0):
    broker.client.zadd(f"{broker.namespace}:__heartbeats__", {worker: (time.time() - age_s) * 1000})


def test_unacknowledged_messages_of_a_dead_worker_go_back_to_their_queue(real_broker):
    job = Job.objects.create(actor_name="update_inventory", kwargs={"order_id": "o"}, status="running", worker="w-dead")
    real_broker.enqueue(build_message(job))
    client, ns = real_broker.client, real_broker.namespace
    # the dead worker had fetched it: move it from the queue to that worker's acks set
    message_id = client.lpop(f"{ns}:default")
    client.sadd(f"{ns}:__acks__.w-dead.default", message_id)
    beat(real_broker, "w-dead", age_s=60)

    result = recovery.recover_stalled(real_broker)

    assert result == {"requeued": 1, "resent": 0, "lost": 0}
    assert client.lrange(f"{ns}:default", 0, -1) == [message_id]
    assert not client.exists(f"{ns}:__acks__.w-dead.default")
    assert client.zscore(f"{ns}:__heartbeats__", "w-dead") is None


def test_live_workers_are_left_alone(real_broker):
    client, ns = real_broker.client, real_broker.namespace
    client.sadd(f"{ns}:__acks__.w-live.default", "m1")
    client.hset(f"{ns}:default.msgs", "m1", "payload")
    beat(real_broker, "w-live")

    assert recovery.recover_stalled(real_broker) == {"requeued": 0, "resent": 0, "lost": 0}
    assert client.smembers(f"{ns}:__acks__.w-live.default") == {b"m1"}


def test_job_left_running_on_a_dead_worker_without_a_message_is_sent_again_once(real_broker):
    job = Job.objects.create(
        actor_name="update_inventory",
        kwargs={"order_id": "o"},
        status="running",
        attempts=2,
        worker="w-gone",
        started_at=timezone.now() - timedelta(minutes=5),
    )
    beat(real_broker, "w-gone", age_s=60)

    assert recovery.recover_stalled(real_broker)["resent"] == 1
    assert recovery.recover_stalled(real_broker)["resent"] == 0  # waiting again, not sent twice

    payload = real_broker.client.hvals(f"{real_broker.namespace}:default.msgs")
    message = dramatiq.Message.decode(payload[0])
    assert (message.message_id, message.options["retries"]) == (str(job.id), 1)  # the same attempt, 2
    assert Job.objects.get(pk=job.pk).status == "enqueued"


def test_a_running_job_on_a_silent_worker_shows_as_stalled(real_broker, operator):
    from django.test import Client

    job = Job.objects.create(actor_name="update_inventory", status="running", worker="w-silent")
    beat(real_broker, "w-silent", age_s=120)
    recovery._alive_cache = (0.0, None)
    client = Client()
    client.force_login(operator)

    page = client.get("/admin/jobs/job/").content.decode()

    assert "running · stalled" in page
    assert str(job.id)[:8] in page


def test_a_waiting_job_whose_message_redis_lost_is_found_and_requeued_now(real_broker, operator, settings):
    from django.test import Client

    settings.BUZZER_LOST_AFTER_SECONDS = 30
    old = timezone.now() - timedelta(seconds=60)
    lost = Job.objects.create(actor_name="update_inventory", status="enqueued", enqueued_at=old)
    queued = Job.objects.create(actor_name="update_inventory", status="enqueued", enqueued_at=old)
    real_broker.enqueue(build_message(queued))  # its message is still in its queue
    recent = Job.objects.create(actor_name="update_inventory", status="enqueued", enqueued_at=timezone.now())
    recovery._alive_cache = (0.0, None)
    client = Client()
    client.force_login(operator)

    assert recovery.lost_job_ids(real_broker) == {lost.pk}
    assert recovery.lost_job_ids_among([lost, queued, recent], real_broker) == {lost.pk, recent.pk}
    page = client.get("/admin/jobs/job/", {"stalled": "yes"}).content.decode()
    assert str(lost.id)[:8] in page and str(queued.id)[:8] not in page and str(recent.id)[:8] not in page

    assert recovery.requeue_now(lost.pk, user=operator)
    assert recovery.lost_job_ids(real_broker) == set()  # sent again: its message is in Redis now
    assert not recovery.requeue_now(queued.pk, user=operator)  # not lost: left alone


def test_a_job_whose_worker_wrote_its_row_before_the_enqueued_mark_is_still_found_lost(real_broker, settings):
    """The web marks a sent job enqueued after the send, and only while it is pending: a
    worker that ran it first (and failed, with its retry unsendable as Redis died) leaves
    it retrying with no enqueued_at. The lost-message scan must still see it."""
    settings.BUZZER_LOST_AFTER_SECONDS = 30
    old = timezone.now() - timedelta(seconds=60)
    unmarked = Job.objects.create(
        actor_name="update_inventory", status="retrying", attempts=1, created_at=old, started_at=old
    )
    recent = Job.objects.create(actor_name="update_inventory", status="retrying", attempts=1, started_at=old)
    assert Job.objects.filter(enqueued_at__isnull=True).count() == 2

    assert recovery.lost_job_ids(real_broker) == {unmarked.pk}
    assert recovery.resend_lost(real_broker) == 1

    payload = real_broker.client.hvals(f"{real_broker.namespace}:default.msgs")
    message = dramatiq.Message.decode(payload[0])
    assert (message.message_id, message.options["retries"]) == (str(unmarked.id), 1)  # its attempt 2
    assert Job.objects.get(pk=unmarked.pk).status == "enqueued"
    assert Job.objects.get(pk=recent.pk).status == "retrying"  # created just now: not lost yet
