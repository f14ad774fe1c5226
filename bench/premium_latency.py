"""Does a premium job start at once while a standard backlog keeps every standard thread busy?

    .venv/bin/python bench/premium_latency.py            # about 2 minutes
    .venv/bin/python bench/premium_latency.py --quick    # about 1 minute (make bench)
    .venv/bin/python bench/premium_latency.py --database-url postgres://postgres@127.0.0.1:5432/buzzer_bench

In one run, one after the other, on the same database and a Redis server of its own
(started on a free port and stopped afterwards; `--redis-url` names another, of which
only the benchmark's namespace is ever deleted), real `manage.py runworkers` processes:

- shared: `runworkers --processes 2 --threads 4`, one pool for every queue (what `make
  run` started before worker groups);
- groups: `runworkers` with BUZZER_WORKER_GROUPS (the default, as `make run` and the
  Procfile start it, unless `--groups` says otherwise).

For each: 10,000 standard jobs of 1 s each (`bench.actors.sleep`) are written and sent
to the `default` queue; once every standard thread runs one, a premium job
(`bench.actors.noop` sent to BUZZER_PREMIUM_QUEUE through `jobs.enqueue`, as a premium
order's jobs are) is sent at jittered intervals. Start latency is the job's `started_at`
(the moment its worker thread took it) minus its `created_at` (the enqueue; it is sent to
Redis at once). Standard latencies are those of the standard jobs that started while the
premium ones were sent. Target (issue 12, goal 3): premium p95 <= 500 ms with worker
groups. The last line of output is one JSON object with the key figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime
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

TARGET_MS = 500.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer premium jobs, closer together (about 1 minute)")
    parser.add_argument("--standard-jobs", type=int, default=10_000)
    parser.add_argument("--standard-seconds", type=float, default=1.0, help="how long each standard job runs")
    parser.add_argument("--probes", type=int, default=None, help="premium jobs sent (default 40, quick 15)")
    parser.add_argument("--interval", type=float, default=None, help="mean seconds between them (0.5, quick 0.3)")
    parser.add_argument("--shared", default="2x4", help="PROCESSESxTHREADS of the shared pool (default 2x4)")
    parser.add_argument("--groups", default=None, help="BUZZER_WORKER_GROUPS for the groups run (default: settings)")
    parser.add_argument("--database-url", default=f"sqlite:///{var_dir() / 'bench-premium.sqlite3'}")
    parser.add_argument("--redis-url", default=None, help="default: a redis-server of the benchmark's own")
    args = parser.parse_args()
    args.probes = args.probes or (15 if args.quick else 40)
    args.interval = args.interval or (0.3 if args.quick else 0.5)
    return args


def setup(env: dict[str, str]) -> None:
    import os

    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill_standard(count: int, seconds: float) -> None:
    from jobs.models import Job
    from jobs.services import dispatch

    rows = [Job(actor_name="sleep", queue_name="default", args=[seconds]) for _ in range(count)]
    Job.objects.bulk_create(rows, batch_size=2000)
    for start in range(0, count, 2000):
        dispatch(rows[start : start + 2000])


def standard_threads(topology: Topology) -> tuple[int, int]:
    """(worker processes in all, threads that take standard jobs)."""
    if topology.kind == SHARED:
        processes, threads = (int(n) for n in topology.spec.split("x"))
        return processes, processes * threads
    from jobs.management.commands.runworkers import worker_groups

    groups = worker_groups(topology.spec)
    standard = next(group for group in groups if "default" in group.queues)
    return sum(group.processes for group in groups), standard.processes * standard.threads


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def run(topology: Topology, args: argparse.Namespace, env: dict[str, str], log: Path) -> dict[str, Any]:
    import dramatiq
    from django.conf import settings

    import jobs
    from bench import actors
    from jobs.models import Job

    broker = dramatiq.get_broker()
    client, namespace = broker.client, broker.namespace
    clear_namespace(client, namespace)
    Job.objects.all().delete()
    processes, threads = standard_threads(topology)
    fill_standard(args.standard_jobs, args.standard_seconds)

    since_ms = time.time() * 1000
    proc = start_workers(topology, env, log)
    try:
        wait_for_beats(client, namespace, processes, since_ms, proc)
        sleeping = Job.objects.filter(actor_name="sleep")
        wait_until(lambda: sleeping.filter(status="running").count() >= threads, 60, "every standard thread busy")
        time.sleep(args.standard_seconds)  # steady state: threads finish and take the next one
        window_start = time.time()
        rng = random.Random(12)
        probes = []
        for i in range(args.probes):
            probes.append(jobs.enqueue(actors.noop, i, queue=settings.BUZZER_PREMIUM_QUEUE).pk)
            time.sleep(args.interval * rng.uniform(0.5, 1.5))
        premium = Job.objects.filter(pk__in=probes)
        wait_until(lambda: premium.filter(status="succeeded").count() == len(probes), 300, "the premium jobs")
        window_end = time.time()
        busy = sleeping.filter(status="running").count()
    finally:
        stop_workers(proc)
    premium_waits = [(job.started_at - job.created_at).total_seconds() for job in premium]
    window = (datetime.fromtimestamp(window_start).astimezone(), datetime.fromtimestamp(window_end).astimezone())
    started = sleeping.filter(started_at__range=window).values_list("started_at", "created_at")
    standard_waits = [(started_at - created_at).total_seconds() for started_at, created_at in started]
    return {
        "topology": topology,
        "premium": summary(premium_waits),
        "standard": summary(standard_waits, scale=1.0),
        "standard_threads": threads,
        "busy_at_end": busy,
        "window": window_end - window_start,
    }


def report(results: list[dict[str, Any]], vendor: str, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n{vendor}, {args.standard_jobs:,} standard jobs of {args.standard_seconds:g} s queued, "
        f"{args.probes} premium jobs sent every ~{args.interval:g} s while every standard thread was busy:\n"
    )
    print(f"{'topology':48} {'premium start, ms':>26}   {'standard start, s':>20}")
    print(f"{'':48} {'p50':>8} {'p95':>8} {'p99':>8}   {'p50':>6} {'p95':>6} {'p99':>6}  threads busy")
    for r in results:
        p, s = r["premium"], r["standard"]
        print(
            f"{r['topology'].label():48} {p['p50']:8.0f} {p['p95']:8.0f} {p['p99']:8.0f}   "
            f"{s['p50']:6.1f} {s['p95']:6.1f} {s['p99']:6.1f}  {r['busy_at_end']}/{r['standard_threads']}"
        )
    shared = next(r for r in results if r["topology"].kind == SHARED)
    groups = next(r for r in results if r["topology"].kind == GROUPS)
    passed = groups["premium"]["p95"] <= TARGET_MS
    ratio = shared["premium"]["p95"] / groups["premium"]["p95"] if groups["premium"]["p95"] else float("inf")
    print(
        f"\npremium p95 with worker groups: {groups['premium']['p95']:.0f} ms (target <= {TARGET_MS:.0f} ms): "
        f"{'PASS' if passed else 'FAIL'}; shared pool: {shared['premium']['p95']:.0f} ms ({ratio:.1f}x)"
    )
    return {
        "bench": "premium_latency",
        "database": vendor,
        "premium_p50_ms": round(groups["premium"]["p50"], 1),
        "premium_p95_ms": round(groups["premium"]["p95"], 1),
        "premium_p99_ms": round(groups["premium"]["p99"], 1),
        "standard_p95_ms": round(groups["standard"]["p95"] * 1000, 1),
        "shared_premium_p95_ms": round(shared["premium"]["p95"], 1),
        "shared_premium_p99_ms": round(shared["premium"]["p99"], 1),
        "shared_standard_p95_ms": round(shared["standard"]["p95"] * 1000, 1),
        "figure": f"premium start p95 {groups['premium']['p95']:.0f} ms with worker groups "
        f"(shared pool: {shared['premium']['p95']:.0f} ms), 10,000 standard jobs queued",
        "bar": f"premium p95 <= {TARGET_MS:.0f} ms",
        "target_ms": TARGET_MS,
        "pass": passed,
    }


def main() -> None:
    args = parse_args()
    var_dir().mkdir(parents=True, exist_ok=True)
    prepare_database(args.database_url)
    with private_redis(args.redis_url) as redis_url:
        env = web_environment(args.database_url, redis_url, PYTHONPATH=str(ROOT))
        env["DJANGO_SETTINGS_MODULE"] = "bench.settings"  # Buzzer's settings plus the bench actors
        setup(env)
        from django.conf import settings
        from django.db import connection

        groups = args.groups or settings.BUZZER_WORKER_GROUPS
        log = var_dir() / "bench-premium-workers.log"
        log.unlink(missing_ok=True)
        results = []
        for topology in (Topology(SHARED, args.shared), Topology(GROUPS, groups)):
            started = time.monotonic()
            results.append(run(topology, args, env, log))
            print(f"{topology.label()}: measured in {time.monotonic() - started:.0f} s", flush=True)
        figures = report(results, connection.vendor, args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
