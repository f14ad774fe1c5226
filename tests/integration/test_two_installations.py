"""Two installations on one Redis database (two checkouts, a staging copy next to
production): each derives its own key namespace from its database, its workers consume
only its queues, and its /metrics shows only its own jobs."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.support.http import request
from tests.support.waiting import wait_until
from tests.support.web import WebProcess
from tests.support.workers import ROOT, WorkerProcess, worker_env

pytestmark = [pytest.mark.integration]

ORDERS = 30


class Installation:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.db_path = directory / "db.sqlite3"
        # No BUZZER_NAMESPACE: each derives its own, as a fresh checkout does.
        self.env = {"DATABASE_URL": f"sqlite:///{self.db_path}", "BUZZER_NAMESPACE": ""}
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("seed_demo")
        self.api_key = self.manage("create_api_key", "two-installations").strip().splitlines()[-1]
        self.namespace = (
            self.manage("shell", "-c", "from django.conf import settings; print(settings.BUZZER_NAMESPACE)")
            .strip()
            .splitlines()[-1]
        )
        self.workers: WorkerProcess | None = None
        self.web: WebProcess | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=worker_env(**self.env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self) -> None:
        self.workers = WorkerProcess(processes=1, threads=4, namespace=self.namespace, **self.env)
        self.web = WebProcess(workers=1, threads=4, **self.env)

    def stop(self) -> None:
        for process in (self.web, self.workers):
            if process is not None:
                process.stop()

    def place_orders(self) -> list[str]:
        ids = []
        for n in range(ORDERS):
            body = {
                "email": f"n{n}@example.com",
                "items": [{"sku": "BUZ-001", "quantity": 1}],
                "card": "4242424242424242",
            }
            status, _, answer = request(
                self.web.url + "/api/orders/", "POST", body, {"Authorization": f"Bearer {self.api_key}"}
            )
            assert status == 201, answer
            ids.append(answer["id"])
        return ids

    def job_statuses(self) -> dict[str, int]:
        with sqlite3.connect(self.db_path) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM jobs_job GROUP BY status").fetchall())

    def finished_in_metrics(self) -> int:
        _, _, text = request(self.web.url + "/metrics")
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in str(text).splitlines()
            if line.startswith("buzzer_jobs_finished_total{") or line.startswith("buzzer_jobs_finished{")
        )


@pytest.fixture
def two(tmp_path: Path) -> Any:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()  # the suite's own server
    a, b = Installation(tmp_path / "a"), Installation(tmp_path / "b")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()
        client.flushdb()


def test_two_installations_on_one_redis_database_keep_to_their_own_jobs(two: tuple[Installation, Installation]) -> None:
    a, b = two
    assert a.namespace != b.namespace
    assert a.namespace.startswith("buzzer-") and b.namespace.startswith("buzzer-")
    a.place_orders()
    b.place_orders()

    for installation in (a, b):
        wait_until(
            lambda i=installation: i.job_statuses() == {"succeeded": 3 * ORDERS},
            timeout=90,
            what=f"every job of installation {installation.namespace} to succeed",
        )
    for installation in (a, b):
        wait_until(
            lambda i=installation: i.finished_in_metrics() == 3 * ORDERS,
            timeout=15,
            what=f"/metrics of {installation.namespace} to count its own {3 * ORDERS} jobs",
        )
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = [k.decode() for k in client.scan_iter("*")]
    # "test:" keys are the suite's email ledger (tests/support/email.py), not the product's.
    stray = [k for k in keys if not k.startswith((f"{a.namespace}:", f"{b.namespace}:", "test:"))]
    assert keys and not stray, stray[:20]
    assert not any(k.startswith("dramatiq:") for k in keys)
    print(f"Two installations on one Redis database: {3 * ORDERS} jobs each, each finished only its own")
