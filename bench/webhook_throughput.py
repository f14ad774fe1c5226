"""Outbound webhooks: how many deliveries a second reach a receiver that answers at
once, and what a hanging endpoint does to placing orders — side by side in one run.

    .venv/bin/python bench/webhook_throughput.py                     # SQLite (var/bench-webhooks.sqlite3)
    .venv/bin/python bench/webhook_throughput.py --database-url postgres://postgres@127.0.0.1:5432/buzzer_bench_wh

1. Deliveries: `--deliveries` events, each to one of `--endpoints` endpoints (all on one
   local receiver that answers 200 at once), drained by `rundramatiq --queues webhooks`
   (`--processes` × `--threads`); the clock runs from the first attempt to the last
   delivery marked succeeded.
2. Orders: `--orders` orders placed one after another in this process
   (`orders.services.place_order`, what the API calls), with the default worker groups
   running (BUZZER_WORKER_GROUPS: `webhooks` on a group of its own); with no endpoint, with one
   endpoint that answers at once, then with one whose receiver never answers (each
   attempt waits out the 10 s timeout).
   Reported: placement latency p50/p95, and the time until every order job succeeded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs_throughput import bench_redis_url, prepare_database, web_environment  # noqa: E402
from bench.jobs_throughput import stop_workers as stop  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each order mode, alternating; medians")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT / 'var' / 'bench-webhooks.sqlite3'}")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL's server, database 13")
    return parser.parse_args()


class Receiver:
    """A local receiver: answers 200 at once, or (hang=True) never answers."""

    def __init__(self, hang: bool = False) -> None:
        self.count = 0
        self.stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.count += 1
                if hang:
                    receiver.stopping.wait(60)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def setup_django(args: argparse.Namespace) -> dict[str, str]:
    env = web_environment(
        args.database_url,
        bench_redis_url(args, database=13),
        BUZZER_WEBHOOKS_ALLOW_PRIVATE="1",  # the receivers listen on loopback, over plain http
        BUZZER_WEBHOOKS_REQUIRE_HTTPS="0",
        BUZZER_RATELIMIT_ENABLED="0",
        dramatiq_worker_timeout="100",
    )
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0)
    return env


def start_workers(env: dict[str, str], processes: int, threads: int, *queues: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "rundramatiq",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            *queues,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_groups(env: dict[str, str], groups: str) -> subprocess.Popen:
    """`manage.py runworkers --groups …`: one rundramatiq per worker group, as `make run`
    and production start them."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworkers", "--groups", groups],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def reset() -> None:
    import dramatiq

    from jobs.models import Job
    from webhooks.models import Endpoint, Event

    Event.objects.all().delete()
    Endpoint.objects.all().delete()
    Job.objects.all().delete()
    dramatiq.get_broker().client.flushdb()
    from webhooks.services import forget_endpoints

    forget_endpoints()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.02)


def deliveries_per_second(args: argparse.Namespace, env: dict[str, str]) -> float:
    from django.db import transaction

    from webhooks import services
    from webhooks.models import Attempt, Delivery, Event

    reset()
    receiver = Receiver()
    endpoints = [services.create_endpoint(f"{receiver.url}/{n}") for n in range(args.endpoints)]
    with transaction.atomic():  # written before the workers start: the queue is full at once
        for n in range(args.deliveries):
            event = Event.objects.create(type="webhook.test", data={"n": n})
            services.deliver_to(event, [endpoints[n % len(endpoints)]])
    workers = start_workers(env, args.processes, args.threads, "webhooks")
    try:
        wait_for(lambda: Attempt.objects.exists(), 120, "the first attempt")
        started = time.perf_counter()
        wait_for(lambda: Delivery.objects.filter(status="succeeded").count() == args.deliveries, 600, "every delivery")
        elapsed = time.perf_counter() - started
    finally:
        stop(workers)
        receiver.stop()
    assert receiver.count >= args.deliveries
    return args.deliveries / elapsed


def place_orders(count: int) -> tuple[list[float], float]:
    """Latencies (ms) of placing `count` orders, and seconds until all their order jobs succeeded."""
    from jobs.models import Job
    from orders.services import place_order

    latencies = []
    ids = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        order = place_order(
            email=f"b{i}@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242"
        )
        latencies.append((time.perf_counter() - t0) * 1000)
        ids.append(str(order.id))
    order_jobs = Job.objects.filter(object_id__in=ids, queue_name="default")
    wait_for(lambda: order_jobs.filter(status="succeeded").count() == 3 * count, 300, "the order jobs")
    return latencies, time.perf_counter() - started


MODES = ("no endpoint", "healthy endpoint", "hanging endpoint")


def orders_with_and_without(
    args: argparse.Namespace, env: dict[str, str]
) -> dict[str, list[tuple[list[float], float]]]:
    """Each mode once per round, in turn (reversed every other round, so that no mode
    always runs on the fresher or the fuller database)."""
    from orders.models import Product
    from webhooks import services

    reset()
    Product.objects.filter(sku="BUZ-001").update(stock=10_000_000)
    results: dict[str, list[tuple[list[float], float]]] = {mode: [] for mode in MODES}
    from django.conf import settings

    workers = start_groups(env, settings.BUZZER_WORKER_GROUPS)
    hanging, quick = Receiver(hang=True), Receiver()
    endpoints = {
        "healthy endpoint": services.create_endpoint(quick.url),
        "hanging endpoint": services.create_endpoint(hanging.url),
    }
    try:
        time.sleep(3)  # the workers boot
        for endpoint in endpoints.values():
            services.pause(endpoint)
        place_orders(20)  # warm-up
        for round_no in range(args.rounds):
            for mode in MODES if round_no % 2 == 0 else reversed(MODES):
                for name, endpoint in endpoints.items():
                    (services.resume if name == mode else services.pause)(endpoint)
                results[mode].append(place_orders(args.orders))
    finally:
        stop(workers)
        hanging.stop()
        quick.stop()
    return results


def main() -> None:
    args = parse_args()
    prepare_database(args.database_url)
    env = setup_django(args)
    from django.conf import settings
    from django.db import connection

    rate = deliveries_per_second(args, env)
    print(
        f"{connection.vendor}: {args.deliveries} deliveries to {args.endpoints} endpoints "
        f"(per-endpoint concurrency {settings.BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY}), "
        f"{args.processes} x {args.threads} webhook workers: {rate:,.0f} deliveries/s",
        flush=True,
    )
    results = orders_with_and_without(args, env)
    print(
        f"\n{args.orders} orders placed one after another (place_order) per run, {args.rounds} runs per mode "
        f"(medians); worker groups {settings.BUZZER_WORKER_GROUPS}:"
    )
    print(f"  {'':18s} {'p50 ms':>8s} {'p95 ms':>8s} {'order jobs done':>16s}")
    for name, runs in results.items():
        p50 = statistics.median(statistics.median(latencies) for latencies, _ in runs)
        p95 = statistics.median(statistics.quantiles(latencies, n=20)[-1] for latencies, _ in runs)
        done = statistics.median(seconds for _, seconds in runs)
        print(f"  {name:18s} {p50:8.1f} {p95:8.1f} {done:14.1f} s")


if __name__ == "__main__":
    main()
