"""What Prometheus and Grafana get: /metrics as served by gunicorn passes `promtool check
metrics`, the example alert rules pass `promtool check rules` (and their unit tests), and
the rules and the dashboard only name metrics that /metrics exports."""

from __future__ import annotations

import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import monitoring, stats
from jobs.claims import Heartbeat
from jobs.writer import Finished
from tests.support.web import WebProcess
from tests.support.workers import ROOT

PROMTOOL = Path("/usr/bin/promtool")
ALERTS = ROOT / "docs" / "prometheus" / "alerts.yml"
ALERTS_TESTS = ROOT / "docs" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "docs" / "grafana" / "buzzer.json"
METRIC_NAME = re.compile(r"\bbuzzer_[a-z0-9_]+")


@pytest.fixture
def promtool() -> str:
    if not (PROMTOOL.is_file() and PROMTOOL.stat().st_mode & 0o111):
        pytest.skip(
            f"promtool is not installed ({PROMTOOL}): make test installs it (Debian package prometheus, "
            "`sudo apt-get install --no-install-recommends prometheus`) where it may"
        )
    return str(PROMTOOL)


def promtool_run(promtool: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def finish(actor: str, queue: str, status: str, run: float | None, wait: float | None) -> Finished:
    at = timezone.now()
    started = at - timedelta(seconds=run) if run is not None else None
    enqueued_ms = int((started.timestamp() - wait) * 1000) if started is not None and wait is not None else 0
    return Finished(
        uuid.uuid4(),
        1,
        status,
        at,
        actor_name=actor,
        queue_name=queue,
        started_at=started,
        enqueued_ms=enqueued_ms,
    )


@pytest.fixture
def busy(real_broker: dramatiq.Broker) -> Iterator[dramatiq.Broker]:
    """Redis with what a running system leaves there: waiting messages, a beating worker,
    finished attempts of two actors on two queues (one with a "|" in its name)."""
    for n in range(3):
        real_broker.enqueue(dramatiq.Message("default", "anything", (n,), {}, {}))
    heartbeat = Heartbeat(real_broker, interval=0.05)
    stats.record(
        real_broker.client,
        real_broker.namespace,
        [finish("shop.email", "default", "succeeded", 0.03, 0.2) for _ in range(8)]
        + [
            finish("shop.email", "default", "retrying", 1.2, 4.0),
            finish("shop.email", "default", "dead", None, None),  # dead-lettered before it ran
            finish("odd|actor", "premium", "succeeded", 700.0, 4000.0),  # beyond the last bounds
        ],
    )
    monitoring.record_sample(real_broker.client, real_broker.namespace)
    yield real_broker
    heartbeat.stop()


def exported_names(body: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(body) for sample in family.samples}


@pytest.mark.django_db(transaction=True)
def test_metrics_served_by_gunicorn_pass_promtool_check_metrics(promtool, busy):
    web = WebProcess(workers=1, threads=2)
    try:
        body = urllib.request.urlopen(web.url + "/metrics", timeout=10).read()  # noqa: S310 - local test server
    finally:
        web.stop()

    checked = promtool_run(promtool, "check", "metrics", stdin=body)

    print(f"promtool check metrics: exit {checked.returncode} {checked.stdout}{checked.stderr}")
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), body.decode()
    names = exported_names(body.decode())
    for histogram in ("buzzer_actor_run_time_seconds", "buzzer_actor_queue_wait_seconds"):
        assert {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"} <= names
    assert "buzzer_jobs_finished_total" in names
