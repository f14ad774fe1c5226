"""Do an order's three jobs still finish fast while 4 large reports are being generated?

    .venv/bin/python bench/long_work_isolation.py            # about 3 minutes (1,000,000 order items)
    .venv/bin/python bench/long_work_isolation.py --quick    # about 1.5 minutes (400,000)
    .venv/bin/python bench/long_work_isolation.py --database-url postgres://postgres@127.0.0.1:5432/buzzer_bench

On a SQLite database of its own (built once with the order items of
bench/report_throughput.py's loader, kept for the next run with as many items; or the
PostgreSQL database `--database-url` names, dropped and built afresh) and a Redis
server of its own (`--redis-url` names another; only the benchmark's namespace is ever
deleted there), one after the other, real `manage.py runworkers` processes:

- shared: `runworkers --processes 2 --threads 4`, one pool for every queue (what `make
  run` started before worker groups): reports take threads of the same processes;
- groups: `runworkers` with BUZZER_WORKER_GROUPS (the default, as `make run` starts it):
  reports run on the `reports` group's process.

For each: 4 orders reports over every item are requested (`reports.services.request_report`);
once they run, an order is placed (`orders.services.place_order`, standard priority)
every ~0.25 s for --seconds; an order's completion is the last of its three jobs'
`finished_at` minus the order's `created_at`. Only orders placed while a report was still
running count. Then the reports are cancelled and the workers stopped. Target (issue 12,
goal 4): order completion p95 <= 1 s with worker groups. The last line of output is one
JSON object with the key figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs_throughput import prepare_database, web_environment  # noqa: E402
from bench.topologies import (  # noqa: E402
    GROUPS,
    SHARED,
    Topology,
    clear_namespace,
    private_redis,
    start_workers,
    stop_workers,
    summary,
    var_dir,
    wait_for_beats,
)

TARGET_MS = 1000.0
REPORTS = 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer order items and a shorter window")
    parser.add_argument("--items", type=int, default=None, help="order items (default 1,000,000, quick 400,000)")
    parser.add_argument("--seconds", type=float, default=None, help="how long orders are placed (30, quick 15)")
    parser.add_argument("--interval", type=float, default=0.25, help="mean seconds between orders")
    parser.add_argument("--shared", default="2x4", help="PROCESSESxTHREADS of the shared pool (default 2x4)")
    parser.add_argument("--groups", default=None, help="BUZZER_WORKER_GROUPS for the groups run (default: settings)")
    parser.add_argument("--database-url", default=f"sqlite:///{var_dir() / 'bench-isolation.sqlite3'}")
    parser.add_argument("--redis-url", default=None, help="default: a redis-server of the benchmark's own")
    args = parser.parse_args()
    args.items = args.items or (400_000 if args.quick else 1_000_000)
    args.seconds = args.seconds or (15.0 if args.quick else 30.0)
    return args


def build(database_url: str, items: int, env: dict[str, str]) -> None:
    """Migrate, and load the order items unless the (SQLite) database already has as many."""
    database = database_url.removeprefix("sqlite:///")
    marker = Path(f"{database}.items")
    sqlite = database_url.startswith("sqlite:///")
    fresh = not (sqlite and Path(database).exists() and marker.exists() and marker.read_text() == str(items))
    if fresh:
        prepare_database(database_url)
        marker.unlink(missing_ok=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if fresh:
        from bench.report_throughput import insert_order_items

        started = time.monotonic()
        insert_order_items(items, stock=1_000_000_000)
        if sqlite:
            marker.write_text(str(items))
        print(f"built {items:,} order items in {time.monotonic() - started:.1f} s", flush=True)


def reset() -> None:
    """Forget the jobs, reports and orders of an earlier run (the loaded items stay)."""
    from jobs.models import Job
    from orders.models import Order
    from reports.models import Report

    Job.objects.all().delete()
    Report.objects.all().delete()
    Order.objects.filter(email__startswith="bench-").delete()


def processes_of(topology: Topology) -> int:
    if topology.kind == SHARED:
        return int(topology.spec.split("x")[0])
    from jobs.management.commands.runworkers import worker_groups

    return sum(group.processes for group in worker_groups(topology.spec))


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def request_reports() -> list[Any]:
    from django.contrib.auth import get_user_model

    from bench.report_throughput import DAYS, parameters
    from reports import services

    owner, _ = get_user_model().objects.get_or_create(username="bench-reports")
    # Each ends a day earlier: identical requests would be answered by one report.
    return [services.request_report("orders", parameters(DAYS - i), owner=owner)[0] for i in range(REPORTS)]


def run(topology: Topology, args: argparse.Namespace, env: dict[str, str], log: Path) -> dict[str, Any]:
    import dramatiq

    from jobs.models import Job
    from orders import services
    from reports import services as report_services
    from reports.models import Report

    broker = dramatiq.get_broker()
    clear_namespace(broker.client, broker.namespace)
    reset()
    since_ms = time.time() * 1000
    proc = start_workers(topology, env, log)
    orders: list[Any] = []
    try:
        wait_for_beats(broker.client, broker.namespace, processes_of(topology), since_ms, proc)
        reports = request_reports()
        ids = [report.pk for report in reports]
        running = Report.objects.filter(pk__in=ids, status="running")
        wait_until(lambda: running.exists(), 60, "a report to start")
        time.sleep(1.0)  # the reports' threads are all taken by now
        rng = random.Random(4)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline and running.exists():
            order = services.place_order(
                email=f"bench-{len(orders)}@example.com",
                items=[{"sku": "BUZ-001", "quantity": 1}],
                card="4242424242424242",
            )
            orders.append(order)
            time.sleep(args.interval * rng.uniform(0.5, 1.5))
        reports_running = running.count()
        order_jobs = Job.objects.filter(object_type="orders.order", object_id__in=[str(o.pk) for o in orders])
        wait_until(lambda: order_jobs.filter(status="succeeded").count() == 3 * len(orders), 300, "the order jobs")
        progress = [report.progress for report in Report.objects.filter(pk__in=ids)]
        # Which worker processes ran the reports (a shared pool's process whose threads all
        # run reports still prefetches order jobs it cannot start).
        report_workers = Counter(
            Job.objects.filter(actor_name="generate_report").exclude(worker="").values_list("worker", flat=True)
        )
        for report in Report.objects.filter(pk__in=ids):
            report_services.cancel_report(report)
    finally:
        stop_workers(proc)
    finished: dict[str, Any] = {}
    for object_id, at in order_jobs.values_list("object_id", "finished_at"):
        finished[object_id] = max(finished.get(object_id, at), at)
    completions = [(finished[str(order.pk)] - order.created_at).total_seconds() for order in orders]
    return {
        "topology": topology,
        "orders": summary(completions),
        "placed": len(orders),
        "reports_running_at_end": reports_running,
        "report_progress": progress,
        "reports_per_process": sorted(report_workers.values(), reverse=True),
    }


def report(results: list[dict[str, Any]], vendor: str, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n{vendor}, {args.items:,} order items; {REPORTS} orders reports over all of them requested, then an order "
        f"every ~{args.interval:g} s for up to {args.seconds:g} s while they ran:\n"
    )
    print(f"{'topology':48} {'order jobs done, ms':>26}   orders  reports per process; running at end, progress %")
    print(f"{'':48} {'p50':>8} {'p95':>8} {'p99':>8}")
    for r in results:
        o = r["orders"]
        print(
            f"{r['topology'].label():48} {o['p50']:8.0f} {o['p95']:8.0f} {o['p99']:8.0f}   {r['placed']:6}  "
            f"{r['reports_per_process']}; {r['reports_running_at_end']}, {r['report_progress']}"
        )
    shared = next(r for r in results if r["topology"].kind == SHARED)
    groups = next(r for r in results if r["topology"].kind == GROUPS)
    passed = groups["orders"]["p95"] <= TARGET_MS
    ratio = shared["orders"]["p95"] / groups["orders"]["p95"] if groups["orders"]["p95"] else float("inf")
    print(
        f"\norder jobs p95 with worker groups: {groups['orders']['p95']:.0f} ms (target <= {TARGET_MS:.0f} ms): "
        f"{'PASS' if passed else 'FAIL'}; shared pool: {shared['orders']['p95']:.0f} ms ({ratio:.1f}x)"
    )
    return {
        "bench": "long_work_isolation",
        "database": vendor,
        "order_jobs_p50_ms": round(groups["orders"]["p50"], 1),
        "order_jobs_p95_ms": round(groups["orders"]["p95"], 1),
        "order_jobs_p99_ms": round(groups["orders"]["p99"], 1),
        "shared_order_jobs_p95_ms": round(shared["orders"]["p95"], 1),
        "shared_order_jobs_p99_ms": round(shared["orders"]["p99"], 1),
        "figure": f"order jobs p95 {groups['orders']['p95']:.0f} ms with worker groups "
        f"(shared pool: {shared['orders']['p95']:.0f} ms) while 4 reports run",
        "bar": f"order jobs p95 <= {TARGET_MS:.0f} ms",
        "target_ms": TARGET_MS,
        "pass": passed,
    }


def main() -> None:
    args = parse_args()
    media = var_dir() / "bench-isolation-media"
    with private_redis(args.redis_url) as redis_url:
        env = web_environment(
            args.database_url,
            redis_url,
            PYTHONPATH=str(ROOT),
            MEDIA_ROOT=str(media),
            BUZZER_REPORTS_PER_USER=str(REPORTS),
        )
        build(args.database_url, args.items, env)
        from django.conf import settings

        groups = args.groups or settings.BUZZER_WORKER_GROUPS
        log = var_dir() / "bench-isolation-workers.log"
        log.unlink(missing_ok=True)
        results = []
        try:
            for topology in (Topology(SHARED, args.shared), Topology(GROUPS, groups)):
                started = time.monotonic()
                results.append(run(topology, args, env, log))
                print(f"{topology.label()}: measured in {time.monotonic() - started:.0f} s", flush=True)
        finally:
            shutil.rmtree(media, ignore_errors=True)
        from django.db import connection

        figures = report(results, connection.vendor, args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
