"""The production process model, started as production starts it: `deploy/release.sh`,
then every process of `Procfile.production` (gunicorn with deploy/gunicorn.conf.py, one
`runworkers` per queue class, two schedulers) on loopback with DEBUG off, against a
redis-server of the test's own and the test database. An order placed over real HTTP
gets its jobs done; static files are served; one scheduler is active; SIGTERM to each
main process (what systemd's KillMode=mixed sends) stops everything cleanly."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from orders.models import ApiKey, Product
from tests.support import email, procfile
from tests.support.data import order_body, order_jobs
from tests.support.figures import record
from tests.support.http import request
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_until
from tests.support.workers import ROOT, alive, descendants, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.serial, pytest.mark.django_db(transaction=True)]

HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS-terminating proxy adds
# Sized down for a 2-core machine; the shape (one pool per queue class) is production's.
SIZES = {
    "WEB_CONCURRENCY": "2",
    "GUNICORN_THREADS": "4",
    **{f"WORKER_{cls}_PROCESSES": "1" for cls in ("STANDARD", "PREMIUM", "REPORTS", "WEBHOOKS")},
    **{f"WORKER_{cls}_THREADS": "2" for cls in ("STANDARD", "PREMIUM", "REPORTS", "WEBHOOKS")},
}
WORKER_PROCESSES = 4  # one per class


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class ProductionStack:
    def __init__(self, env: dict[str, str], logs: Path, port: int) -> None:
        self.env = env
        self.logs = logs
        self.port = port
        self.processes: list[Started] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "deploy/release.sh"],
            cwd=ROOT,
            env={**self.env, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self) -> None:
        for name, command in procfile.entries().items():
            log = self.logs / f"{name}.log"
            with log.open("wb") as out:
                # As honcho and platforms do, through a shell (the ${VAR:-default} sizes);
                # exec, so that the process we signal is the program itself (systemd's main PID).
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", f"exec {command}"],
                    cwd=ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.processes.append(Started(name, proc, log))

    def every_pid(self) -> set[int]:
        pids: set[int] = set()
        for started in self.processes:
            pids |= {started.proc.pid, *descendants(started.proc.pid)}
        return pids

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        """wait_until, failing with the jobs' states and every process's output."""
        try:
            return wait_until(predicate, timeout=timeout, what=what)
        except AssertionError as exc:
            jobs = list(order_jobs().values_list("actor_name", "queue_name", "status"))
            raise AssertionError(f"{exc}\njobs: {jobs}\n{self.outputs()}") from None

    def outputs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.output()[-3000:]}" for s in self.processes)

    def stop(self, timeout: float = 60) -> dict[str, int | None]:
        """SIGTERM to each main process only, then wait; what is still running is killed."""
        for started in self.processes:
            if started.proc.poll() is None:
                started.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for started in self.processes:
            try:
                codes[started.name] = started.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[started.name] = None
        return codes

    def kill_all(self) -> None:
        for pid in self.every_pid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for started in self.processes:
            if started.proc.poll() is None:
                started.proc.wait(10)


@pytest.fixture
def stack(transactional_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProductionStack]:
    # Emails are counted in the suite's Redis (tests/support/email.py), read from here.
    monkeypatch.setenv(email.LEDGER_URL_ENV, settings.REDIS_URL)
    email.reset()
    server = RedisServer(tmp_path / "redis").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    env = worker_env(
        DEBUG="0",
        REDIS_URL=server.url(),
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        BUZZER_ENV_FILE=str(tmp_path / "production.env"),  # none: the environment says it all
        BUZZER_VAR_DIR=str(tmp_path / "var"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **SIZES,
    )
    # Production's values, not the suite's shortcuts for its other worker processes.
    for name in ("dramatiq_worker_timeout", "BUZZER_WEBHOOKS_ALLOW_PRIVATE"):
        env.pop(name, None)
    (tmp_path / "production.env").write_text("")
    production = ProductionStack(env, logs, port)
    try:
        yield production
    finally:
        production.kill_all()  # only what a failed test left running
        server.stop()
        email.reset()


def healthy(url: str) -> dict[str, Any] | None:
    try:
        status, _, body = request(f"{url}/healthz", timeout=5)
    except OSError:
        return None
    return body if status == 200 and isinstance(body, dict) else None


def first_answer(port: int, path: str) -> tuple[int, str | None]:
    """Status and Location of a plain-HTTP GET, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Location")
    finally:
        connection.close()


def place(url: str, key: str, **overrides: Any) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {key}", **HTTPS}
    return request(f"{url}/api/orders/", "POST", order_body(**overrides), headers)


def test_the_production_processes_take_an_order_over_http_and_stop_cleanly_on_sigterm(stack: ProductionStack):
    began = time.monotonic()
    Product.objects.create(sku="BUZ-001", name="Buzzer", price="24.90", stock=1000)
    _, key = ApiKey.issue("production-model")

    released = stack.release()
    assert released.returncode == 0, released.stdout + released.stderr
    assert "System check identified no issues" in released.stdout + released.stderr
    release_seconds = time.monotonic() - began

    started_at = time.monotonic()
    stack.start()
    assert set(procfile.entries()) >= {"web", "scheduler", "scheduler_standby"}
    report = stack.wait(
        lambda: (lambda r: r if r and r["workers_alive"] >= WORKER_PROCESSES and r["scheduler_alive"] else None)(
            healthy(stack.url)
        ),
        f"/healthz to report {WORKER_PROCESSES} workers and the scheduler alive",
    )
    startup_seconds = time.monotonic() - started_at
    assert report["database"] == "ok" and report["redis"] == "ok", report

    # HTTPS is enforced (DEBUG off): plain HTTP is redirected, the proxy's header is trusted.
    status, location = first_answer(stack.port, "/api/orders/")
    assert status == 301 and location == f"https://127.0.0.1:{stack.port}/api/orders/", (status, location)

    standard = place(stack.url, key, email="standard@example.com", items=[{"sku": "BUZ-001", "quantity": 2}])
    premium = place(
        stack.url, key, email="premium@example.com", items=[{"sku": "BUZ-001", "quantity": 3}], priority="premium"
    )
    for status, headers, body in (standard, premium):
        assert status == 201, body
        assert "max-age=" in headers.get("Strict-Transport-Security", ""), headers
    order_ids = [standard[2]["id"], premium[2]["id"]]

    stack.wait(lambda: order_jobs().filter(status="succeeded").count() == 6, "the two orders' six jobs to succeed")
    assert set(order_jobs().values_list("queue_name", flat=True)) == {"default", "premium"}
    sent = {message["id"] for message in email.sent()}
    assert sent == {email.confirmation_id(order_id) for order_id in order_ids}, email.sent()
    assert Product.objects.get(sku="BUZ-001").stock == 1000 - 5

    # Static files with DEBUG off: WhiteNoise serves the hashed names collectstatic wrote.
    status, _, page = request(f"{stack.url}/", headers=HTTPS)
    assert status == 200
    css = re.search(r'href="(/static/buzzer\.[0-9a-f]{12}\.css)"', page)
    assert css, page[:2000]
    status, headers, body = request(stack.url + css.group(1), headers=HTTPS)
    assert status == 200 and headers["Content-Type"].startswith("text/css"), headers
    assert "immutable" in headers.get("Cache-Control", ""), headers
    assert body == (ROOT / "static" / "buzzer.css").read_text()

    status, _, metrics = request(f"{stack.url}/metrics")
    assert status == 200
    assert f"buzzer_workers_alive {float(WORKER_PROCESSES)}" in metrics, metrics[:3000]
    assert 'buzzer_jobs_finished_total{actor="send_confirmation_email",status="succeeded"} 2.0' in metrics

    # gunicorn as configured: WEB_CONCURRENCY workers, an access line per request with
    # its duration and the request id the application logs and hands to its jobs.
    web = next(s for s in stack.processes if s.name == "web").output()
    assert web.count("Booting worker with pid") == int(SIZES["WEB_CONCURRENCY"]), web
    assert re.search(r'"POST /api/orders/ HTTP/1\.1" 201 \d+ \d+ms request_id=[0-9a-f]{32} ', web), web[-3000:]

    # One scheduler schedules, the other stands by: the lease names the first.
    schedulers = {s.name: s for s in stack.processes if s.name.startswith("scheduler")}
    active = [s for s in schedulers.values() if "is active" in s.output()]
    assert len(active) == 1, stack.outputs()
    holder = redis.Redis.from_url(stack.env["REDIS_URL"]).get(f"{settings.BUZZER_NAMESPACE}:buzzer:scheduler:lease")
    assert holder is not None and holder.decode().split(":")[1] == str(active[0].proc.pid)
    assert all("waiting for the lease" in s.output() for s in schedulers.values())

    pids = stack.every_pid()
    stopping = time.monotonic()
    codes = stack.stop()
    stop_seconds = time.monotonic() - stopping
    assert codes == dict.fromkeys(codes, 0), f"{codes}\n{stack.outputs()}"
    wait_until(lambda: not [pid for pid in pids if alive(pid)], timeout=10, what="every process to be gone")
    record(
        f"production model: release {release_seconds:.1f} s, healthy {startup_seconds:.1f} s after start "
        f"({len(pids)} processes), orders done, clean stop in {stop_seconds:.1f} s, "
        f"whole test {time.monotonic() - began:.1f} s"
    )
