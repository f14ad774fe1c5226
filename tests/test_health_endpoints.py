"""/healthz and /metrics: what they answer, when they say 503, and their token."""

import time
import uuid
from datetime import timedelta

import dramatiq
import pytest
from django.db import OperationalError
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import health, monitoring, stats
from jobs.claims import Heartbeat
from jobs.models import Alert
from jobs.writer import Finished
from tests.support.outage import redis_down

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_without_redis():
    with redis_down() as broker:
        yield broker


@pytest.fixture
def worker_beating(real_broker):
    heartbeat = Heartbeat(real_broker, interval=0.05)
    deadline = time.monotonic() + 5
    while not any(w.alive for w in monitoring.workers(real_broker.client, real_broker.namespace)):
        assert time.monotonic() < deadline, "the heartbeat never beat"
        time.sleep(0.02)
    yield real_broker
    heartbeat.stop()


@pytest.fixture
def healthy(worker_beating, settings):
    settings.BUZZER_SAMPLE_SECONDS = 5
    monitoring.record_sample(worker_beating.client, worker_beating.namespace)
    return worker_beating


def test_healthz_is_200_ok_with_a_worker_and_the_scheduler_beating(client, healthy):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert (body["database"], body["redis"], body["workers_alive"], body["scheduler_alive"]) == ("ok", "ok", 1, True)
    assert body["alerts"] == [] and body["problems"] == []


def test_healthz_is_503_without_a_live_worker(client, real_broker, settings):
    monitoring.record_sample(real_broker.client, real_broker.namespace)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["problems"] == ["no worker alive"]
    assert response.json()["status"] == "unhealthy"


def test_healthz_is_503_when_the_scheduler_fell_silent(client, worker_beating, settings):
    settings.BUZZER_SAMPLE_SECONDS = 5
    silent_since_ms = int((time.time() - 16) * 1000)  # more than three intervals
    worker_beating.client.set(monitoring.scheduler_key(worker_beating.namespace), silent_since_ms)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["scheduler_alive"] is False
    assert response.json()["problems"] == ["scheduler silent"]


def test_an_open_alert_degrades_healthz_but_keeps_it_200(client, healthy):
    Alert.objects.create(kind="queue_rising", queue_name="default", message="Queue default has been rising")
    Alert.objects.create(kind="dlq_growing", queue_name="default", message="closed", closed_at=timezone.now())

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert [(a["kind"], a["message"]) for a in body["alerts"]] == [("queue_rising", "Queue default has been rising")]


def test_healthz_answers_503_at_once_when_redis_is_down(client, broker_without_redis):
    started = time.monotonic()
    response = client.get("/healthz")

    assert time.monotonic() - started < 3
    assert response.status_code == 503
    body = response.json()
    assert (body["redis"], body["database"], body["workers_alive"]) == ("unavailable", "ok", None)
    assert "redis unavailable" in body["problems"]


def test_healthz_is_503_when_the_database_does_not_answer(client, healthy, monkeypatch):
    class DownConnection:
        def cursor(self):
            raise OperationalError("could not connect to server")

    monkeypatch.setattr(health, "connection", DownConnection())
    monkeypatch.setattr(health, "open_alerts", lambda: pytest.fail("alerts read from a database that is down"))

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_a_set_token_is_required_as_bearer_header_or_query(client, healthy, settings, path):
    settings.BUZZER_MONITORING_TOKEN = "s3cret-token"

    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get(path, {"token": "s3cret-token"}).status_code == 200


def metrics(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    values = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_export_queue_worker_and_actor_figures(client, healthy):
    for n in range(2):
        healthy.enqueue(dramatiq.Message("default", "anything", (n,), {}, {}))
    now = timezone.now()
    stats.record(
        healthy.client,
        healthy.namespace,
        [
            Finished(
                uuid.uuid4(),
                1,
                status,
                now,
                actor_name="shop.email",
                queue_name="default",
                started_at=now - timedelta(milliseconds=30),
            )
            for status in ("succeeded", "succeeded", "succeeded", "dead")
        ],
    )

    values = metrics(client)

    assert values[("buzzer_queue_depth", (("queue", "default"),))] == 2
    assert values[("buzzer_queue_depth", (("queue", "premium"),))] == 0
    assert values[("buzzer_queue_oldest_age_seconds", (("queue", "default"),))] >= 0
    assert values[("buzzer_workers_alive", ())] == 1
    assert values[("buzzer_scheduler_alive", ())] == 1
    assert values[("buzzer_jobs_finished_total", (("actor", "shop.email"), ("status", "succeeded")))] == 3
    assert values[("buzzer_jobs_finished_total", (("actor", "shop.email"), ("status", "dead")))] == 1
    assert values[("buzzer_actor_failure_ratio", (("actor", "shop.email"),))] == pytest.approx(0.25)
    run_time = (("actor", "shop.email"), ("queue", "default"))
    assert values[("buzzer_actor_run_time_seconds_count", run_time)] == 4
    assert values[("buzzer_actor_run_time_seconds_bucket", (*run_time[:1], ("le", "0.025"), *run_time[1:]))] == 0
    assert values[("buzzer_actor_run_time_seconds_bucket", (*run_time[:1], ("le", "0.05"), *run_time[1:]))] == 4


def finish(actor, queue, run, wait=None):
    now = timezone.now()
    started = now - timedelta(seconds=run)
    enqueued_ms = round((started.timestamp() - wait) * 1000) if wait is not None else 0
    return Finished(
        uuid.uuid4(),
        1,
        "succeeded",
        now,
        actor_name=actor,
        queue_name=queue,
        started_at=started,
        enqueued_ms=enqueued_ms,
    )


def histogram_families(client):
    response = client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    return families["buzzer_actor_run_time_seconds"], families["buzzer_actor_queue_wait_seconds"]


def series(family):
    """Per label set (without le): the buckets as (bound, value) in order, count and sum."""
    result = {}
    for sample in family.samples:
        labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        entry = result.setdefault(labels, {"buckets": [], "count": None, "sum": None})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        else:
            entry[sample.name.rpartition("_")[2]] = sample.value
    return result


def test_metrics_export_run_time_and_queue_wait_as_cumulative_histograms(client, healthy):
    runs = [0.0004, 0.003, 0.02, 0.02, 0.3, 4.0, 4.0, 90.0, 900.0]
    waits = [0.002, 0.2, 1.1, 1.1, 12.0, 45.0, 100.0, 400.0, 5000.0]  # none on a bound (ms precision)
    events = [finish("shop.email", "default", run, wait) for run, wait in zip(runs, waits, strict=True)]
    events += [finish("reports.generate", "reports", 2.0, 0.5), finish("shop.email", "premium", 0.01, 0.01)]
    stats.record(healthy.client, healthy.namespace, events[:4])
    stats.record(healthy.client, healthy.namespace, events[4:])  # two batches, one series

    run_family, wait_family = histogram_families(client)

    assert (run_family.type, wait_family.type) == ("histogram", "histogram")
    assert run_family.documentation and wait_family.documentation
    for family, observed, bounds in ((run_family, runs, stats.BUCKETS), (wait_family, waits, stats.WAIT_BUCKETS)):
        found = series(family)
        assert set(found) == {
            (("actor", "shop.email"), ("queue", "default")),
            (("actor", "shop.email"), ("queue", "premium")),
            (("actor", "reports.generate"), ("queue", "reports")),
        }
        email = found[(("actor", "shop.email"), ("queue", "default"))]
        assert [bound for bound, _ in email["buckets"]] == [*bounds, float("inf")]
        counts = [value for _, value in email["buckets"]]
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] == email["count"] == len(observed)  # +Inf is the count
        for bound, value in email["buckets"]:
            assert value == sum(1 for seconds in observed if seconds <= bound)
        assert email["sum"] == pytest.approx(sum(observed), rel=0.01)
        for entry in found.values():
            assert entry["buckets"][-1][1] == entry["count"]


def test_metrics_answer_503_when_redis_is_down(client, broker_without_redis):
    response = client.get("/metrics")

    assert response.status_code == 503
    assert b"unavailable" in response.content
