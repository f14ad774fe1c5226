"""What Prometheus and Grafana get: /metrics as served by gunicorn passes `promtool check
metrics`, the example alert rules pass `promtool check rules` (and their unit tests), and
the rules and the dashboard only name metrics that /metrics exports."""

from __future__ import annotations

import json
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


def test_the_example_alert_rules_pass_promtool_check_rules_and_their_unit_tests(promtool):
    checked = promtool_run(promtool, "check", "rules", str(ALERTS))
    tested = promtool_run(promtool, "test", "rules", str(ALERTS_TESTS))

    print(f"promtool check rules: exit {checked.returncode} {checked.stdout.strip()} {checked.stderr.strip()}")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [variable["definition"] for variable in dashboard["templating"]["list"]]
    return queries


@pytest.mark.django_db
def test_the_alert_rules_and_the_dashboard_name_only_metrics_that_metrics_exports(client, busy):
    exported = exported_names(client.get("/metrics").content.decode())

    in_rules = set(METRIC_NAME.findall(ALERTS.read_text()))
    in_dashboard = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}

    assert in_rules and in_dashboard
    assert in_rules - exported == set()
    assert in_dashboard - exported == set()


def test_the_dashboard_shows_depth_throughput_failure_rate_and_run_time_quantiles():
    dashboard = json.loads(DASHBOARD.read_text())  # valid JSON
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"]
    exprs = {panel["title"]: [t["expr"] for t in panel["targets"]] for panel in dashboard["panels"]}
    assert all(panel["datasource"]["uid"] == "${DS_PROMETHEUS}" for panel in dashboard["panels"])
    assert "buzzer_queue_depth" in exprs["Queue depth"][0]
    assert "rate(buzzer_jobs_finished_total" in exprs["Throughput (finished attempts per minute)"][0]
    assert 'status=~"retrying|dead"' in exprs["Failure rate"][0]
    p50, p95 = exprs["Run time p50 / p95"]
    assert p50.startswith("histogram_quantile(0.5, ") and p95.startswith("histogram_quantile(0.95, ")
    assert "buzzer_actor_run_time_seconds_bucket" in p50 and "by (actor, le)" in p95


def test_the_dashboard_queries_are_valid_promql(promtool, tmp_path):
    # promtool parses the expressions of recording rules: one per query, Grafana's
    # variables replaced by what Grafana would put there.
    replaced = {"$__rate_interval": "5m", "$queue": ".*", "$actor": ".*"}
    rules = []
    for n, query in enumerate(q for q in dashboard_queries() if not q.startswith("label_values(")):
        for variable, value in replaced.items():
            query = query.replace(variable, value)
        rules.append({"record": f"buzzer:dashboard_query_{n}", "expr": query})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML

    checked = promtool_run(promtool, "check", "rules", str(path))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
