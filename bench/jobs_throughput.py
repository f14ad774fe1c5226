"""How fast do workers drain no-op jobs, bare Dramatiq vs. with Buzzer's job tracking?

Both modes run in one invocation, on the same worker settings, against a Redis database
and a SQL database of the benchmark's own (never the data of `make run`):

    .venv/bin/python bench/jobs_throughput.py                      # SQLite (var/bench.sqlite3)
    .venv/bin/python bench/jobs_throughput.py --database-url postgres://postgres@127.0.0.1:5432/buzzer_bench

"bare" sends plain Dramatiq messages to workers without the tracking middleware;
"tracked" writes Job rows, dispatches them through `jobs.services.dispatch` and runs
workers with the full middleware stack; its time runs until every row is `succeeded`.
The queue is filled before the workers start; the clock starts when the first job is
taken and stops when the last one is finished. The bar (issue 12, goal 2): tracked at
>= 90% of bare at the default prefetch, >= 80% with `--prefetch 64`. `--quick`: 4,000
jobs, two rounds (bench/summary.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.result import emit  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4,000 jobs (unless given)")
    parser.add_argument("--jobs", type=int, default=None, help="default 20,000")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=None, help="alternating bare/tracked rounds; medians reported")
    parser.add_argument("--prefetch", type=int, default=None, help="dramatiq_queue_prefetch for the workers")
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL's server, database 14")
    args = parser.parse_args()
    args.jobs = args.jobs or (4_000 if args.quick else 20_000)
    args.rounds = args.rounds or 2
    return args


def bench_redis_url(args: argparse.Namespace, database: int = 14) -> str:
    """--redis-url, else REDIS_URL's server with a database of the benchmark's own."""
    if args.redis_url:
        return args.redis_url
    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return urlunsplit(parts._replace(path=f"/{database}"))


def web_environment(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's gunicorn and workers: production settings (DEBUG
    off) on the benchmark's own database and Redis database, mail kept in memory."""
    return dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        BUZZER_TESTING="0",
        BUZZER_BROKER="redis",
        BUZZER_ENV_FILE="/nonexistent/.env",
        DEBUG="0",
        SECRET_KEY="benchmark-only-secret-key-" + "x" * 30,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LOG_LEVEL="WARNING",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        **extra,
    )


def prepare_database(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(args: argparse.Namespace) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "BUZZER_TESTING": "0",
            "BUZZER_BROKER": "redis",
            "BUZZER_ENV_FILE": "/nonexistent/.env",
            "DEBUG": "0",
            "SECRET_KEY": "benchmark-only-secret-key-" + "x" * 30,
            "ALLOWED_HOSTS": "localhost",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": bench_redis_url(args),
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill_bare(n: int) -> None:
    import dramatiq

    broker = dramatiq.get_broker()
    for i in range(n):
        broker.enqueue(dramatiq.Message("default", "noop", (i,), {}, {}))


def fill_tracked(n: int) -> None:
    from jobs.models import Job
    from jobs.services import dispatch

    Job.objects.all().delete()
    rows = [Job(actor_name="noop", queue_name="default", args=[i]) for i in range(n)]
    Job.objects.bulk_create(rows, batch_size=2000)
    for start in range(0, n, 2000):
        assert dispatch(rows[start : start + 2000]) == len(rows[start : start + 2000])


def start_workers(args: argparse.Namespace, tracking: bool) -> subprocess.Popen:
    env = dict(os.environ, BUZZER_JOB_TRACKING="1" if tracking else "0", PYTHONPATH=str(ROOT))
    if args.prefetch:
        env["dramatiq_queue_prefetch"] = str(args.prefetch)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.actors",
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
            "--queues",
            "default",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_workers(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group started with start_new_session; SIGKILL if it hangs."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def drain(args: argparse.Namespace, tracking: bool) -> float:
    """Fill the queue, start the workers, return jobs per second from first take to last finish."""
    import dramatiq
    from django.db.models import Count

    from jobs.models import Job

    broker = dramatiq.get_broker()
    client = broker.client
    client.flushdb()
    n = args.jobs
    (fill_tracked if tracking else fill_bare)(n)
    queue_key = f"{broker.namespace}:default"
    assert client.llen(queue_key) == n

    proc = start_workers(args, tracking)
    try:
        while client.llen(queue_key) == n:
            time.sleep(0.001)
        started = time.perf_counter()
        # The clock must not take CPU from the workers it measures: a cheap look at the
        # queue's length every 25 ms until it is empty, then the close watch below, which
        # runs only for the last fetched jobs. (Watching the rows every 5 ms from the first
        # job on took 12% of a core here, and PostgreSQL's CPU for its queries, from the
        # tracked workers alone.)
        while client.llen(queue_key):
            time.sleep(0.025)
        if tracking:
            # Done when no row is left short of `succeeded`: an index probe per status,
            # not a count of the rows done so far (counting 20,000 rows 50 times a second
            # took CPU from the workers being measured).
            unfinished = Job.objects.filter(status__in=["pending", "enqueued", "running", "retrying"])
            while unfinished.exists():
                time.sleep(0.005)
        else:
            # Done when the queue is empty and nothing is in flight (every ack set empty).
            acks = f"{broker.namespace}:__acks__.*"
            while client.llen(queue_key) or any(client.scard(k) for k in client.scan_iter(acks)):
                time.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        stop_workers(proc)
    if tracking:
        states = dict(Job.objects.values_list("status").annotate(n=Count("id")))
        assert states == {"succeeded": n}, states
        assert set(Job.objects.values_list("attempts", flat=True)) == {1}
    return n / elapsed


def main() -> None:
    args = parse_args()
    prepare_database(args.database_url)
    setup_django(args)
    from django.db import connection

    rates: dict[str, list[float]] = {"bare": [], "tracked": []}
    for round_no in range(1, args.rounds + 1):
        for mode in ("bare", "tracked"):
            rate = drain(args, tracking=mode == "tracked")
            rates[mode].append(rate)
            print(f"round {round_no} {mode:8s} {rate:8.0f} jobs/s", flush=True)
    bare, tracked = statistics.median(rates["bare"]), statistics.median(rates["tracked"])
    print(
        f"\n{connection.vendor}, {args.jobs} no-op jobs, {args.processes} processes x {args.threads} threads"
        f"{f', prefetch {args.prefetch}' if args.prefetch else ''}:\n"
        f"  bare Dramatiq   {bare:8.0f} jobs/s\n"
        f"  Buzzer tracked  {tracked:8.0f} jobs/s  (every Job row succeeded)\n"
        f"  ratio           {tracked / bare:8.1%}"
    )
    bar = 0.8 if args.prefetch and args.prefetch >= 64 else 0.9
    prefetch = f"prefetch {args.prefetch}" if args.prefetch else "default prefetch"
    emit(
        "jobs_throughput",
        figure=f"tracked {tracked / bare:.0%} of bare ({tracked:,.0f} / {bare:,.0f} jobs/s, {prefetch})",
        bar=f"tracked >= {bar:.0%} of bare",
        passed=tracked / bare >= bar,
        database=connection.vendor,
        prefetch=args.prefetch,
        bare_jobs_per_s=round(bare),
        tracked_jobs_per_s=round(tracked),
        ratio=round(tracked / bare, 3),
    )


if __name__ == "__main__":
    main()
