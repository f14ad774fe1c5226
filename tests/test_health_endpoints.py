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
    assert 0.025 < values[("buzzer_actor_run_time_seconds", (("actor", "shop.email"), ("quantile", "0.5")))] <= 0.05


def test_metrics_answer_503_when_redis_is_down(client, broker_without_redis):
    response = client.get("/metrics")

    assert response.status_code == 503
    assert b"unavailable" in response.content
