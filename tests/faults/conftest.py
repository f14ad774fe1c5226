"""The fault-injection suite: each test gets its own Redis server on a private port (so
that it may kill it), real gunicorn / rundramatiq / runscheduler processes against the
test database, and a ledger of sent emails kept in the suite's Redis, which survives the
private one's death."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import dramatiq
import pytest
from django.db.models import Sum

from orders.models import DailySales, Order, OrderItem, Product
from tests.support import email
from tests.support.brokers import redis_broker
from tests.support.data import order_body
from tests.support.http import request
from tests.support.keys import key
from tests.support.postgres_server import PostgresServer, server_bin_dir
from tests.support.redis_server import RedisServer
from tests.support.web import WebProcess
from tests.support.workers import ROOT, WorkerProcess, scheduler_process, worker_env

STOCK = 1_000_000


class FaultStack:
    def __init__(self, redis_server: RedisServer, broker: dramatiq.Broker, logs: Path) -> None:
        self.redis = redis_server
        self.broker = broker
        self.logs = logs
        self._workers: list[WorkerProcess] = []
        self._webs: list[WebProcess] = []
        self._schedulers: list[Any] = []

    def workers(
        self, processes: int = 1, threads: int = 8, supervised: bool = True, redis_url: str = "", **env: str
    ) -> WorkerProcess:
        """`redis_url`: the stack's server by default (another way to it: a proxy)."""
        worker = WorkerProcess(
            processes=processes,
            threads=threads,
            supervised=supervised,
            redis_url=redis_url or self.redis.url(),
            log=self.logs / f"worker-{len(self._workers)}.log",
            **env,
        )
        self._workers.append(worker)
        return worker

    def scheduler(self, **env: str) -> subprocess.Popen:
        context = scheduler_process(
            log=self.logs / f"scheduler-{len(self._schedulers)}.log", REDIS_URL=self.redis.url(), **env
        )
        proc = context.__enter__()
        self._schedulers.append(context)
        return proc

    def web(self, **kwargs: Any) -> WebProcess:
        from django.conf import settings

        # The test process's key, so that sessions it logs in are valid there.
        kwargs.setdefault("SECRET_KEY", settings.SECRET_KEY)
        web = WebProcess(log=self.logs / f"web-{len(self._webs)}.log", REDIS_URL=self.redis.url(), **kwargs)
        self._webs.append(web)
        return web

    def broker_id_of(self, pid: int) -> str:
        """The Dramatiq broker id of a worker process, from the beats it writes."""
        from tests.support.waiting import wait_until

        def lookup() -> str | None:
            for entry in self.redis.client().zrange(key("buzzer:workers"), 0, -1):
                broker_id, _host, entry_pid = entry.decode().split("|")
                if int(entry_pid) == pid:
                    return broker_id
            return None

        return wait_until(lookup, timeout=30, what=f"the heartbeat of worker pid {pid}")

    def close(self) -> None:
        for web in self._webs:
            web.stop()
        for worker in self._workers:
            worker.stop()
        for context in self._schedulers:
            context.__exit__(None, None, None)

    def dead_threads(self) -> list[str]:
        """The threads that died of an exception in the stack's processes, from their logs
        (Python prints "Exception in thread …"): a consumer, heartbeat or ack thread that
        dies leaves its process alive but no longer doing that part of its work."""
        found = []
        for log in sorted(self.logs.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            for number, line in enumerate(lines):
                if "Exception in thread" in line:
                    found.append(f"{log.name}:{number + 1}: " + " | ".join(lines[number : number + 40])[-2000:])
        return found


@pytest.fixture
def stack(
    transactional_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> Iterator[FaultStack]:
    # The ledger stays in the suite's Redis: the private server may be killed.
    monkeypatch.setenv(email.LEDGER_URL_ENV, settings.REDIS_URL)
    email.reset()
    server = RedisServer(tmp_path / "redis").start()
    settings.REDIS_URL = server.url()
    settings.BROKER_URL = f"{server.url()}?socket_connect_timeout=1&socket_timeout=5"
    logs = ROOT / "var" / "faults" / f"{time.strftime('%H%M%S')}-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    with redis_broker(server.url()) as broker:
        fault_stack = FaultStack(server, broker, logs)
        try:
            yield fault_stack
        finally:
            fault_stack.close()
    server.stop()
    email.reset()
    dead = fault_stack.dead_threads()
    assert not dead, "a thread of the stack's processes died:\n" + "\n".join(dead)


@pytest.fixture
def private_postgres(transactional_db: None, request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own (which it may kill), migrated, with the test process
    and every process the stack starts pointed at it; list it before the fixtures that
    write rows. `@pytest.mark.postgres_server(max_connections=N)` sets the server's limit.
    PostgreSQL runs only: the test's own connection cannot switch from SQLite."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL fault test: run the suite with DATABASE_URL=postgres://...")
    if server_bin_dir() is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    marker = request.node.get_closest_marker("postgres_server")
    options = marker.kwargs if marker else {}
    server = PostgresServer(max_connections=options.get("max_connections", 100)).start()
    saved = dict(connection.settings_dict)
    try:
        server.execute("CREATE DATABASE buzzer")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=worker_env(DATABASE_URL=server.url("buzzer")),
            check=True,
        )
        connection.close()
        connection.settings_dict.update(NAME="buzzer", HOST="127.0.0.1", PORT=server.port, USER="postgres", PASSWORD="")
        yield server
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        server.stop()


@pytest.fixture
def stocked(transactional_db: None) -> dict[str, Product]:
    """Products with stock enough for every order a fault test places."""
    Product.objects.bulk_create(
        [
            Product(sku="BUZ-001", name="Buzzer", price=Decimal("24.90"), stock=STOCK),
            Product(sku="MUG-001", name="Mug", price=Decimal("12.50"), stock=STOCK),
        ]
    )
    return {p.sku: p for p in Product.objects.all()}


def order_effects(orders: list[Order] | None = None) -> dict[str, int]:
    """Count every side effect of the given orders (all orders by default) independently
    of the jobs' own bookkeeping: emails in the ledger, stock taken, daily sales counted."""
    orders = list(Order.objects.all()) if orders is None else orders
    wanted = {email.confirmation_id(order.id) for order in orders}
    sent_ids = [message["id"] for message in email.sent()]
    emails = sum(1 for message_id in set(sent_ids) if message_id in wanted)
    duplicate_emails = len(sent_ids) - len(set(sent_ids))
    ordered = OrderItem.objects.values("sku").annotate(quantity=Sum("quantity"))
    stock_taken = {p.sku: STOCK - p.stock for p in Product.objects.all()}
    stock_expected = {row["sku"]: row["quantity"] for row in ordered}
    sales = DailySales.objects.aggregate(orders=Sum("orders"))["orders"] or 0
    return {
        "orders": len(orders),
        "emails": emails,
        "duplicate_emails": duplicate_emails,
        "stranger_emails": len(set(sent_ids) - wanted),
        "stock_ok": int(all(stock_taken.get(sku, 0) == quantity for sku, quantity in stock_expected.items())),
        "stock_taken": sum(stock_taken.values()),
        "stock_expected": sum(stock_expected.values()),
        "sales_orders": sales,
        "sales_expected": Order.objects.count(),  # every order placed is counted once
    }


def all_effects_once(effects: dict[str, int]) -> bool:
    return (
        effects["emails"] == effects["orders"]
        and effects["duplicate_emails"] == 0
        and effects["stranger_emails"] == 0
        and effects["stock_taken"] == effects["stock_expected"]
        and effects["stock_ok"] == 1
        and effects["sales_orders"] == effects["sales_expected"]
    )


def job_counts() -> dict[str, int]:
    from django.db.models import Count

    from jobs.models import Job

    return dict(Job.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))


def wait_for_effects(orders: list[Order], timeout: float) -> dict[str, int]:
    """Wait until every order has all its effects once; fail with what is missing."""
    deadline = time.monotonic() + timeout
    while True:
        effects = order_effects(orders)
        if all_effects_once(effects):
            return effects
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s: effects {effects}, jobs {job_counts()}")
        time.sleep(0.5)


class Answer(NamedTuple):
    sent: float  # time.monotonic() when the request went out
    seconds: float
    status: int  # 0: no HTTP answer at all (connection refused or reset, timeout)
    body: Any
    retry_after: str | None


class OrderLoad:
    """Client threads placing orders over HTTP, one after another each, until stopped."""

    def __init__(self, web: WebProcess, api_key: str, clients: int, pause: float = 0.0) -> None:
        self.results: list[Answer] = []
        self._stop = threading.Event()
        self._url = f"{web.url}/api/orders/"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._pause = pause
        self._threads = [threading.Thread(target=self._place, args=(n,)) for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _place(self, number: int) -> None:
        i = 0
        while not self._stop.is_set():
            sent = time.monotonic()
            body = order_body(email=f"c{number}-{i}@example.com")
            try:
                status, headers, answer = request(self._url, "POST", body, self._headers, timeout=30)
            except OSError as exc:
                status, headers, answer = 0, {}, repr(exc)
            self.results.append(Answer(sent, time.monotonic() - sent, status, answer, headers.get("Retry-After")))
            i += 1
            time.sleep(self._pause)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self.results
