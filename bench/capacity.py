"""What does one order cost in each shared component? (issue 15, the capacity plan)

    .venv/bin/python bench/capacity.py                         # SQLite (var/bench-capacity.sqlite3)
    .venv/bin/python bench/capacity.py --database-url postgres://postgres@127.0.0.1:5432/capacity
    .venv/bin/python bench/capacity.py --quick                 # 200 orders, under a minute

One command: a database of the benchmark's own (dropped and created) and a `redis-server`
of its own on a private port, so that every counter below is this benchmark's alone.
`--orders` orders go the real way: `POST /api/orders/` over HTTP to gunicorn (sync
workers, DEBUG off), from `--clients` client threads, with the job workers stopped (the
jobs wait in Redis); then `manage.py runworkers` drains them (its queues held paused
until every worker process has booted, so that the CPU counted is the jobs' and not
Django's start-up).

Counted exactly, per order (web) and per job (workers):

- SQL statements by kind and transactions, in every gunicorn and worker process (an
  execute wrapper installed by bench/capacity_settings.py, bench/capacity_probe.py), and
  the rows each write touched; on PostgreSQL also the server's own counts: rows
  inserted, updated and deleted per table (`pg_stat_user_tables`), and the WAL the
  benchmark's database wrote (`pg_walinspect`, read every second while the server still
  has it: the records that touch its relations and their transactions' commit records;
  other databases' WAL left out). The execute wrapper's row counts are the driver's
  `rowcount`, which SQLite leaves at 0 for `INSERT … RETURNING`: on SQLite, rows written
  are undercounted;
- per table, the rows it grew by and its size (`pg_total_relation_size`, SQLite's `dbstat`);
- Redis: commands by name (`INFO commandstats`; the commands a Lua script runs count too),
  round trips (counted in the client), bytes in and out (`total_net_input_bytes`,
  `total_net_output_bytes`, the benchmark's own INFO readings subtracted), the memory
  the queued jobs hold and the memory left once they are done (claims and effect marks
  live `BUZZER_CLAIM_TTL_SECONDS`), by key pattern;
- CPU time (user + system) of the gunicorn processes (after a warm-up of a few orders,
  which pays for the imports), the worker processes, the PostgreSQL backends serving the
  database (the benchmark's own connections left out), and the Redis server (its `INFO
  cpu`, less what it burns with no client at all).

Then, unless `--capture-orders 0`: Redis's ceiling for this command mix. A second, small
pass (`--capture-orders` orders, placed and drained the same way) is recorded with
`MONITOR`; the client commands it saw (blocking pops turned into plain pops, so nothing
waits) are replayed `--replay-copies` times, each copy in a database of its own, through
`redis-cli --pipe` (every command pipelined) at full speed: jobs per second one Redis
process serves with perfect pipelining, next to the figure its CPU time per job in the
real run allows. The recording is also counted by what each command serves, from its
key: the broker, claims, stats, effect marks, rate limits, the worker registry.

Last, pruning: the run's jobs are aged past `BUZZER_JOB_RETENTION_DAYS` and
`jobs.monitoring.prune_finished_jobs` (the scheduler's hourly prune) deletes them: its
statements per 1,000 jobs and its rate. And, on PostgreSQL, a hot row: record_analytics'
transaction (an effect row, then the day's sales row + 1) from 8 connections on one
day's row, then on a row per connection, transactions per second. The projection printed at the end (100, 1,000
and 10,000 orders a second) is arithmetic on the measured figures, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.capacity_probe import Totals, commandstats_delta, read_totals  # noqa: E402
from bench.jobs_throughput import prepare_database, web_environment  # noqa: E402
from bench.jobs_throughput import stop_workers as stop  # noqa: E402
from bench.result import emit  # noqa: E402
from bench.topologies import descendants, free_port, private_redis, var_dir  # noqa: E402

RATES = (100, 1_000, 10_000)
CARD = "4242424242424242"
DAY = 86_400


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 orders, 50 recorded, 10 replay copies")
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT / 'var' / 'bench-capacity.sqlite3'}")
    parser.add_argument("--orders", type=int, default=None, help="orders measured (default 2,000)")
    parser.add_argument("--items", type=int, default=1, help="items (distinct products) per order")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--worker-threads", type=int, default=4)
    parser.add_argument("--capture-orders", type=int, default=None, help="orders recorded for the replay (0: none)")
    parser.add_argument("--replay-copies", type=int, default=None, help="times the recording is replayed")
    parser.add_argument("--json", default="", help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.orders is None:
        args.orders = 200 if args.quick else 2_000
    if args.capture_orders is None:
        args.capture_orders = 50 if args.quick else 200
    if args.replay_copies is None:
        args.replay_copies = 10 if args.quick else 40
    return args


# --- readings ------------------------------------------------------------------------


@dataclass
class Reading:
    """Every counter at one moment."""

    at: float
    redis: dict[str, Any]
    commands: dict[str, Any]
    postgres: dict[str, Any] | None
    cpu: dict[str, float] = field(default_factory=dict)


def redis_reading(client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return client.info(), client.info("commandstats")


def postgres_reading(url: str) -> dict[str, Any] | None:
    """Rows written per table and in the database, and the WAL position. Read in one
    transaction on a connection of its own (its own counts are reads only)."""
    if not url.startswith("postgres"):
        return None
    import psycopg

    with psycopg.connect(url) as conn:
        database = conn.execute(
            "SELECT tup_inserted, tup_updated, tup_deleted, xact_commit FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
        tables = {
            name: (ins, upd, dele, hot)
            for name, ins, upd, dele, hot in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables"
            )
        }
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return {"database": database, "tables": tables, "lsn": lsn}


def postgres_cpu(database: str, exclude: set[int]) -> float:
    """CPU seconds of the PostgreSQL backends serving `database`, alive now, but for the
    benchmark's own (`exclude`)."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.pid in exclude:
                continue
            if proc.info["name"] == "postgres" and f" {database} " in " ".join(proc.info["cmdline"] or []):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, alive now."""
    import psutil

    total = 0.0
    for one in [pid, *descendants(pid)]:
        try:
            times = psutil.Process(one).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def redis_cpu(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Meter:
    """Takes readings; knows what one reading itself costs Redis (its INFO calls)."""

    def __init__(self, client: Any, database_url: str, database: str) -> None:
        self.client = client
        self.database_url = database_url
        self.database = database
        self.wal = WalTracker(database_url) if database_url else None
        first = self._raw()
        second = self._raw()
        self.info_in = int(second.redis["total_net_input_bytes"]) - int(first.redis["total_net_input_bytes"])
        self.info_out = int(second.redis["total_net_output_bytes"]) - int(first.redis["total_net_output_bytes"])
        # What the Redis server burns with no client at all (its cron, hz 10), taken off
        # every phase's Redis CPU: at a few hundred orders it would otherwise dominate.
        time.sleep(1.0)
        third = self._raw()
        self.redis_idle_cpu = (redis_cpu(third.redis) - redis_cpu(second.redis)) / (third.at - second.at)

    def own_backends(self) -> set[int]:
        """The benchmark's connections to its database: the WAL tracker's and Django's."""
        from django.db import connection

        pids = {self.wal.conn.info.backend_pid} if self.wal else set()
        if connection.connection is not None:
            pids.add(connection.connection.info.backend_pid)
        return pids

    def _raw(self) -> Reading:
        info, commands = redis_reading(self.client)
        return Reading(time.monotonic(), info, commands, None)

    def read(self, **cpu_of: int) -> Reading:
        """A reading; `cpu_of` names process trees (name=pid) whose CPU time to include."""
        cpu = {name: tree_cpu(pid) for name, pid in cpu_of.items()}
        if self.database:
            cpu["postgres"] = postgres_cpu(self.database, self.own_backends())
        reading = Reading(time.monotonic(), *redis_reading(self.client), postgres_reading(self.database_url), cpu)
        reading.cpu["redis"] = redis_cpu(reading.redis)
        if reading.postgres is not None and self.wal is not None:
            reading.postgres["wal"] = self.wal.reading()
        return reading


@dataclass
class Phase:
    """What happened between two readings, with the processes' own counts."""

    name: str
    units: int  # orders (web) or jobs (workers)
    seconds: float
    probe: Totals
    redis_commands: dict[str, int]
    redis_in: int
    redis_out: int
    redis_memory: int
    cpu: dict[str, float]
    postgres_rows: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> ins/upd/del
    wal: dict[str, Any] = field(default_factory=dict)
    measured: int = 0  # units the probe's counts and the processes' CPU cover (units when 0)
    redis_usec: int = 0  # time Redis spent running the commands (INFO commandstats), I/O not included


def phase(
    name: str,
    units: int,
    meter: Meter,
    before: Reading,
    after: Reading,
    probe: Totals,
    measured: int = 0,
    pg_before: Reading | None = None,
    pg_after: Reading | None = None,
) -> Phase:
    """Redis over `units`; the processes' CPU over `measured` (scaled to `units`, so that
    dividing by `units` gives the CPU per measured unit); PostgreSQL's rows between
    `pg_before` and `pg_after` (default: before and after)."""
    commands = commandstats_delta(before.commands, after.commands)
    commands.pop("info", None)  # the benchmark's own readings
    usec = sum(
        int(stats["usec"]) - int(before.commands.get(key, {}).get("usec", 0))
        for key, stats in after.commands.items()
        if key != "cmdstat_info"
    )
    scale = units / (measured or units)
    cpu = {k: (after.cpu[k] - before.cpu[k]) * (1.0 if k == "redis" else scale) for k in after.cpu if k in before.cpu}
    cpu["redis"] = max(0.0, cpu["redis"] - meter.redis_idle_cpu * (after.at - before.at))
    result = Phase(
        name,
        units,
        after.at - before.at,
        probe,
        commands,
        int(after.redis["total_net_input_bytes"]) - int(before.redis["total_net_input_bytes"]) - meter.info_in,
        int(after.redis["total_net_output_bytes"]) - int(before.redis["total_net_output_bytes"]) - meter.info_out,
        int(after.redis["used_memory"]) - int(before.redis["used_memory"]),
        cpu,
        measured=measured or units,
        redis_usec=usec,
    )
    pg_before, pg_after = pg_before or before, pg_after or after
    if pg_before.postgres and pg_after.postgres:
        for table, counts in pg_after.postgres["tables"].items():
            old = pg_before.postgres["tables"].get(table, (0, 0, 0, 0))
            delta = {k: counts[i] - old[i] for i, k in enumerate(("inserted", "updated", "deleted", "hot"))}
            if any(delta.values()):
                result.postgres_rows[table] = delta
        old, new = pg_before.postgres["wal"], pg_after.postgres["wal"]
        result.wal = {k: new[k] - old[k] for k in ("records", "bytes", "fpi_bytes", "cluster_bytes")}
        if new["error"]:
            result.wal = {"cluster_bytes": _lsn(pg_after.postgres["lsn"]) - _lsn(pg_before.postgres["lsn"])}
            result.wal["error"] = new["error"]
    return result


class WalTracker:
    """The WAL this database writes: every second, the records written since the last
    look (pg_walinspect) that touch its relations, and the commit records of their
    transactions, are added up — read while the server still has them (a shared server's
    other databases make it recycle segments within minutes). Other databases' WAL is
    left out; `cluster_bytes` is everything the server wrote."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        (oid,) = self.conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
        self.pattern = f"% rel %/{oid}/%"
        self.position = self._flushed()
        self.xids: set[int] = set()
        self.totals = {"records": 0, "bytes": 0, "fpi_bytes": 0, "cluster_bytes": 0}
        self.error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _flushed(self) -> str:
        (lsn,) = self.conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        return lsn

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.catch_up()

    def catch_up(self) -> None:
        with self._lock:
            if self.error:
                return
            end = self._flushed()
            if end == self.position:
                return
            try:
                rows = self.conn.execute(
                    "SELECT xid::text::bigint, resource_manager = 'Transaction', block_ref LIKE %s, record_length, "
                    "fpi_length FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn) "
                    "WHERE block_ref LIKE %s OR resource_manager = 'Transaction'",
                    (self.pattern, self.position, end, self.pattern),
                ).fetchall()
            except Exception as exc:  # noqa: BLE001 - WAL already recycled, extension missing: say so
                self.error = str(exc).splitlines()[0]
                return
            for xid, commit, mine, length, fpi in rows:
                if mine:
                    self.xids.add(xid)
                if mine or (commit and xid in self.xids):
                    self.totals["records"] += 1
                    self.totals["bytes"] += length
                    self.totals["fpi_bytes"] += fpi
            self.totals["cluster_bytes"] += _lsn(end) - _lsn(self.position)
            self.position = end

    def reading(self) -> dict[str, Any]:
        self.catch_up()
        with self._lock:
            return {**self.totals, "error": self.error}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


# --- the stack -----------------------------------------------------------------------


def environment(database_url: str, redis_url: str, probe_dir: Path) -> dict[str, str]:
    env = web_environment(
        database_url,
        redis_url,
        BUZZER_RATELIMIT_API_ORDERS="100000000/m",  # checked on every order (its cost counts), never binds
        PYTHONPATH=str(ROOT),
        BUZZER_CAPACITY_PROBE_DIR=str(probe_dir),
    )
    env["DJANGO_SETTINGS_MODULE"] = "bench.capacity_settings"
    env.pop("BUZZER_NAMESPACE", None)
    return env


def setup(env: dict[str, str], items: int) -> tuple[str, list[str], str]:
    """Migrate, seed; return (API key, SKUs to order, the Redis namespace)."""
    os.environ.update({**env, "BUZZER_CAPACITY_ROLE": "setup"})
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from orders.models import ApiKey, Product

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0)
    Product.objects.update(stock=10**9)  # the jobs take stock off: it must never run out
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    skus = list(Product.objects.filter(active=True).order_by("sku").values_list("sku", flat=True))[:items]
    if len(skus) < items:
        sys.exit(f"only {len(skus)} products to order")
    _, raw = ApiKey.issue("capacity")
    connection.close()
    return raw, skus, settings.BUZZER_NAMESPACE


def start_web(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**env, "BUZZER_CAPACITY_ROLE": "web"},
        start_new_session=True,
    )


def start_workers(env: dict[str, str], args: argparse.Namespace, queues: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "runworkers",
                "--processes",
                str(args.worker_processes),
                "--threads",
                str(args.worker_threads),
                "--queues",
                *queues,
            ],
            cwd=ROOT,
            env={**env, "BUZZER_CAPACITY_ROLE": "worker"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    """Until gunicorn listens: a TCP connect, no request (a request would count)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("gunicorn did not listen within 60 s")


def place_orders(port: int, key: str, skus: list[str], count: int, clients: int, start: int) -> None:
    """`count` orders over HTTP from `clients` threads; every answer must be 201."""
    failures: list[str] = []
    numbers = iter(range(start, start + count))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                number = next(numbers, None)
            if number is None or failures:
                return
            body = {"email": f"c{number}@example.com", "items": [{"sku": s, "quantity": 1} for s in skus], "card": CARD}
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/orders/",
                data=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
                    if response.status != 201:
                        failures.append(f"order {number}: {response.status}")
            except OSError as exc:
                failures.append(f"order {number}: {exc}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit(f"not every order was accepted: {failures[:3]}")


def settle(probe_dir: Path, role: str, timeout: float = 10.0) -> Totals:
    """The role's totals once their SQL counts stop moving (the probe dumps every 0.2 s;
    idle workers go on polling Redis, so round trips never stop)."""
    last = read_totals(probe_dir, role)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = read_totals(probe_dir, role)
        if (now.statements, now.commits, now.rows) == (last.statements, last.commits, last.rows):
            return now
        last = now
    return last


def wait_for_beats(client: Any, namespace: str, processes: int, since_ms: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"runworkers exited with {proc.returncode}")
        if len(client.zrangebyscore(f"{namespace}:buzzer:workers", since_ms, "+inf")) >= processes:
            return
        time.sleep(0.1)
    sys.exit(f"only some of the {processes} worker processes started within 120 s")


def wait_for_jobs(expected: int, timeout: float = 600) -> None:
    from jobs.models import Job

    deadline = time.monotonic() + timeout
    unfinished = Job.objects.exclude(status=Job.Status.SUCCEEDED)
    while unfinished.exists() or Job.objects.count() < expected:
        if time.monotonic() > deadline:
            sys.exit("the jobs did not all succeed in time")
        time.sleep(0.2)


# --- one pass: orders, then their jobs -----------------------------------------------


@dataclass
class Pass:
    web: Phase
    workers: Phase
    idle_commands_per_s: float
    idle_cpu_per_s: float
    jobs_per_order: float
    queues: list[str]
    memory_after: dict[str, Any]


class Stack:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], key: str, skus: list[str], namespace: str):
        import redis

        self.args, self.env, self.key, self.skus, self.namespace = args, env, key, skus, namespace
        self.client = redis.Redis.from_url(env["REDIS_URL"])
        self.probe_dir = Path(env["BUZZER_CAPACITY_PROBE_DIR"])
        self.log = var_dir() / "bench-capacity-workers.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.placed = 0

    def run(self, orders: int, meter: Meter, on_start: Any = None, on_drained: Any = None) -> Pass:
        from django.db import connection

        from jobs.models import Job
        from jobs.queues import paused_key

        args = self.args
        warm = min(20, max(2, orders // 20))
        port = free_port()
        jobs_before = Job.objects.count()
        connection.close()
        if on_start:
            on_start()
        start = meter.read()
        web = start_web(self.env, port, args.web_workers)
        try:
            wait_for_port(port, web)
            place_orders(port, self.key, self.skus, warm, min(args.clients, warm), self.placed)
            self.placed += warm
            probe_warm = settle(self.probe_dir, "web")
            warm_reading = meter.read(web=web.pid)
            place_orders(port, self.key, self.skus, orders, args.clients, self.placed)
            self.placed += orders
            placed = meter.read(web=web.pid)
            probe_web = settle(self.probe_dir, "web")
        finally:
            stop(web)
        time.sleep(0.5)  # the backends' statistics are flushed as they exit
        after_web = meter.read()
        after_web.cpu = {**placed.cpu, "redis": after_web.cpu["redis"]}
        start.cpu = {**warm_reading.cpu, "redis": start.cpu["redis"]}
        # Everything over warm-up + measured orders, but CPU over the measured ones (the
        # warm-up pays for imports): scaled inside `phase`.
        web_phase = phase("web", warm + orders, meter, start, after_web, probe_web.minus(probe_warm), orders)
        jobs_total = Job.objects.count()
        new_jobs = jobs_total - jobs_before
        queues = sorted(set(Job.objects.values_list("queue_name", flat=True)))
        connection.close()

        # Workers: booted with their queues paused, counted from there.
        self.client.sadd(paused_key(self.namespace), *queues)
        since = time.time() * 1000
        workers = start_workers(self.env, args, queues, self.log)
        try:
            wait_for_beats(self.client, self.namespace, args.worker_processes, since, workers)
            time.sleep(1.0)
            probe_boot = settle(self.probe_dir, "worker")
            before = meter.read(workers=workers.pid)
            self.client.srem(paused_key(self.namespace), *queues)
            wait_for_jobs(jobs_total)
            drained = meter.read(workers=workers.pid)
            if on_drained:
                on_drained()
            probe_drained = settle(self.probe_dir, "worker")
            time.sleep(0.5)
            idle_start = meter.read(workers=workers.pid)
            time.sleep(2.0)
            idle_end = meter.read(workers=workers.pid)
        finally:
            stop(workers)
            connection.close()
        time.sleep(0.5)
        after_workers = meter.read()
        worker_phase = phase(
            "workers", new_jobs, meter, before, drained, probe_drained.minus(probe_boot), pg_after=after_workers
        )
        idle_seconds = idle_end.at - idle_start.at
        idle = commandstats_delta(idle_start.commands, idle_end.commands)
        idle.pop("info", None)
        idle_commands = sum(idle.values())
        idle_cpu = idle_end.cpu["workers"] - idle_start.cpu["workers"]
        return Pass(
            web_phase,
            worker_phase,
            idle_commands / idle_seconds,
            idle_cpu / idle_seconds,
            new_jobs / (warm + orders),
            queues,
            memory_by_pattern(self.client, self.namespace),
        )


_VARIABLE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}|\d+")


def memory_by_pattern(client: Any, namespace: str, sample: int = 20) -> dict[str, Any]:
    """Keys of the namespace grouped by shape (ids and numbers replaced by `*`): count,
    mean bytes of up to `sample` of them (MEMORY USAGE), and the TTL of one."""
    groups: dict[str, list[bytes]] = {}
    counts: Counter[str] = Counter()
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        shape = _VARIABLE.sub("*", key.decode(errors="replace").removeprefix(namespace))
        counts[shape] += 1
        if len(groups.setdefault(shape, [])) < sample:
            groups[shape].append(key)
    result = {}
    for shape, keys in groups.items():
        sizes = [client.memory_usage(k) or 0 for k in keys]
        result[shape] = {"keys": counts[shape], "bytes_each": sum(sizes) / len(sizes), "ttl_s": client.ttl(keys[0])}
    return result


# --- table sizes -----------------------------------------------------------------------


def table_sizes(tables: list[str]) -> dict[str, dict[str, int]]:
    """Rows and bytes (with indexes) of each table."""
    from django.db import connection

    sizes: dict[str, dict[str, int]] = {}
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - our own table names
            (rows,) = cursor.fetchone()
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT pg_total_relation_size(%s), pg_relation_size(%s), pg_indexes_size(%s)", [table] * 3
                )
                total, heap, indexes = cursor.fetchone()
            else:
                cursor.execute(
                    "SELECT coalesce(sum(pgsize), 0), coalesce(sum(CASE WHEN d.name = %s THEN pgsize END), 0) "
                    "FROM dbstat d JOIN sqlite_master m ON m.name = d.name WHERE m.tbl_name = %s",
                    [table, table],
                )
                total, heap = cursor.fetchone()
                indexes = total - heap
            sizes[table] = {"rows": rows, "bytes": total, "heap": heap, "indexes": indexes}
    return sizes


GROWING_TABLES = (
    "orders_order",
    "orders_orderitem",
    "jobs_job",
    "jobs_effect",
    "jobs_jobattempt",
    "jobs_jobvalue",
    "jobs_queuesample",
    "orders_dailysales",
    "orders_idempotencykey",
)


def existing_tables() -> list[str]:
    from django.db import connection

    present = set(connection.introspection.table_names())
    return [t for t in GROWING_TABLES if t in present]


# --- pruning -------------------------------------------------------------------------


def measure_prune() -> dict[str, float]:
    """Age every finished job past the retention and let the hourly prune delete them."""
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from jobs.models import Job
    from jobs.monitoring import prune_finished_jobs

    old = timezone.now() - timedelta(days=settings.BUZZER_JOB_RETENTION_DAYS + 1)
    Job.objects.update(finished_at=old, created_at=old)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        cpu = time.process_time()
        deleted = prune_finished_jobs()
        cpu = time.process_time() - cpu
        seconds = time.perf_counter() - started
    statements = Counter(q["sql"].split(None, 1)[0].upper() for q in queries.captured_queries)
    return {
        "deleted": deleted,
        "seconds": seconds,
        "rows_per_s": deleted / seconds if seconds else float("nan"),
        "statements_per_1000": 1000 * len(queries.captured_queries) / deleted if deleted else float("nan"),
        "statements": dict(statements),
        "python_cpu_ms_per_1000": 1000 * cpu * 1000 / deleted if deleted else float("nan"),
        "retention_days": settings.BUZZER_JOB_RETENTION_DAYS,
    }


# --- a hot row ----------------------------------------------------------------------


def measure_hot_row(url: str, seconds: float, threads: int = 8) -> dict[str, float]:
    """record_analytics' transaction (an effect row, then one day's sales row + 1) from
    `threads` connections for `seconds`: every order of a day updates the same row, so
    each transaction waits for the one before it to commit. The same transaction with a
    row per connection shows what the waiting costs. Transactions per second."""
    import uuid

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO orders_dailysales (date, orders, items, revenue) "
            "SELECT DATE '2000-01-01' + n, 0, 0, 0 FROM generate_series(0, %s) AS n ON CONFLICT DO NOTHING",
            (threads,),
        )
    result = {}
    for label in ("one row", "a row per connection"):
        done = [0] * threads
        stop = threading.Event()

        def work(n: int, label: str = label, done: list[int] = done, stop: threading.Event = stop) -> None:
            day = 0 if label == "one row" else n + 1
            with psycopg.connect(url) as conn:
                while not stop.is_set():
                    with conn.transaction():
                        conn.execute(
                            "INSERT INTO jobs_effect (key, state, job_id, created_at, updated_at) "
                            "VALUES (%s, 'done', NULL, now(), now())",
                            (f"capacity-hot:{uuid.uuid4()}",),
                        )
                        conn.execute(
                            "UPDATE orders_dailysales SET orders = orders + 1, items = items + 1, "
                            "revenue = revenue + 1 WHERE date = DATE '2000-01-01' + %s",
                            (day,),
                        )
                    done[n] += 1

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        result[label] = sum(done) / (time.perf_counter() - started)
    return result


# --- the replay ------------------------------------------------------------------------

_MONITOR_LINE = re.compile(r"^\+?(\d+\.\d+) \[(\d+) ([^\]]+)\] (.*)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def unescape(text: str) -> bytes:
    """An argument as MONITOR prints it (Redis' sdscatrepr) back to its bytes."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and i + 3 < len(text):
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt.encode())
            i += 2
            continue
        out += char.encode("latin-1") if ord(char) < 256 else char.encode()
        i += 1
    return bytes(out)


def parse_monitor_line(line: str) -> tuple[str, list[bytes]] | None:
    """(client, arguments) of one MONITOR line; None for a line that is no command."""
    match = _MONITOR_LINE.match(line)
    if match is None:
        return None
    client, rest = match.group(3), match.group(4)
    return client, [unescape(arg) for arg in _QUOTED.findall(rest)]


REPLAY_SKIP = {b"INFO", b"MONITOR", b"CLIENT", b"HELLO", b"SELECT", b"PING", b"SCAN", b"MEMORY", b"TTL"}


def replayable(arguments: list[bytes]) -> list[bytes] | None:
    """The command to replay, or None: a blocking pop becomes a plain pop (a replay must
    never wait), the benchmark's own commands and connection set-up are left out."""
    name = arguments[0].upper()
    if name in REPLAY_SKIP:
        return None
    if name == b"BLPOP":
        return [b"LPOP", arguments[1]]
    return arguments


def resp(arguments: list[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(arguments)]
    for arg in arguments:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class Monitor:
    """Records every command the server runs, from a thread of its own."""

    def __init__(self, port: int) -> None:
        self.lines: list[str] = []
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not data:
                return
            buffer += data
            *complete, buffer = buffer.split(b"\r\n")
            self.lines += [line.decode("latin-1") for line in complete]

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.lines


FAMILIES = (
    (":buzzer:claim:", "claims"),
    (":buzzer:cancel", "claims"),
    (":buzzer:effect-done:", "effect marks"),
    (":buzzer:stats:", "stats"),
    (":ratelimit:", "rate limits"),
    (":buzzer:", "workers, pauses"),
)


def family(arguments: list[bytes]) -> str:
    """Which part of Buzzer a command serves, by the key it names (a script call: by its
    last key, which for the claim script is a claim's cancel mark): claims, effect marks,
    stats, rate limits, or the broker (queues, messages, acks, heartbeats, wake-ups)."""
    name = arguments[0].upper()
    if name in (b"EVALSHA", b"EVAL"):
        keys = int(arguments[2]) if len(arguments) > 2 and arguments[2].isdigit() else 0
        key = arguments[2 + keys] if keys else b""
    else:
        key = arguments[1] if len(arguments) > 1 else b""
    text = key.decode(errors="replace")
    if not text or name in (b"SCRIPT", b"HELLO", b"CLIENT", b"INFO", b"SELECT", b"PING", b"MONITOR"):
        return "other"
    for marker, label in FAMILIES:
        if marker in text:
            return label
    return "broker"


def replay(lines: list[str], port: int, copies: int, client: Any) -> dict[str, Any]:
    """Every client command recorded, `copies` times (each copy in database 1…copies of
    the private server), through `redis-cli --pipe`; the rate and Redis's CPU meanwhile.
    Also every command recorded (those scripts ran too) by the part of Buzzer it serves."""
    commands: list[list[bytes]] = []
    lua = 0
    families: Counter[str] = Counter()
    for line in lines:
        parsed = parse_monitor_line(line)
        if parsed is None or not parsed[1]:
            continue
        source, arguments = parsed
        if arguments[0].upper() not in REPLAY_SKIP:
            families[family(arguments)] += 1
        if source == "lua":
            lua += 1
            continue
        command = replayable(arguments)
        if command:
            commands.append(command)
    stream = b"".join(resp(c) for c in commands)
    cli = shutil.which("redis-cli")
    if cli is None:
        return {"error": "redis-cli not found"}
    copies = max(1, copies)
    with tempfile.NamedTemporaryFile(suffix=".resp") as tmp:
        for copy in range(copies):
            # Databases 1-15 in turn, emptied before one is used again (the flush is timed too).
            tmp.write(resp([b"SELECT", str(copy % 15 + 1).encode()]))
            if copy >= 15:
                tmp.write(resp([b"FLUSHDB"]))
            tmp.write(stream)
        tmp.flush()
        before = client.info()
        started = time.perf_counter()
        with open(tmp.name, "rb") as source:
            done = subprocess.run(
                [cli, "-p", str(port), "--pipe"], stdin=source, capture_output=True, text=True, check=False
            )
        seconds = time.perf_counter() - started
        after = client.info()
    replies = re.search(r"errors: (\d+), replies: (\d+)", done.stdout)
    import redis

    for db in range(1, min(copies, 15) + 1):
        redis.Redis(port=port, db=db).flushdb()
    return {
        "commands": len(commands),
        "lua_commands": lua,
        "copies": copies,
        "seconds": seconds,
        "errors": int(replies.group(1)) if replies else -1,
        "replies": int(replies.group(2)) if replies else -1,
        "redis_cpu_s": redis_cpu(after) - redis_cpu(before),
        "bytes": len(stream) * copies,
        "families": dict(families),
    }


# --- report --------------------------------------------------------------------------


def report(
    main_pass: Pass,
    *,
    sizes: dict[str, dict[str, int]],
    prune: dict[str, float],
    replayed: dict[str, Any],
    capture_jobs: int,
    vendor: str,
    args: argparse.Namespace,
    meter_idle_cpu: float,
    hot: dict[str, float],
) -> dict[str, Any]:
    """Print every figure and the projection; return them all."""
    web, work = main_pass.web, main_pass.workers
    orders = web.units
    measured = web.measured
    jobs_per_order = main_pass.jobs_per_order
    print(
        f"\n{vendor}: {measured} orders measured (+{orders - measured} warm-up), {args.items} item(s) each, "
        f"{work.units} jobs ({jobs_per_order:.2f} per order), gunicorn {args.web_workers} sync workers, "
        f"runworkers {args.worker_processes} x {args.worker_threads} on queues {', '.join(main_pass.queues)}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )

    def line(label: str, per_order: float, per_job: float, unit: str = "") -> None:
        print(f"  {label:44s} {per_order:12.2f} {per_job:12.2f} {unit}")

    print(f"  {'':44s} {'per order':>12s} {'per job':>12s}")
    print("  web request (POST /api/orders/)")
    line("SQL statements", web.probe.statement_count / measured, float("nan"))
    for kind, count in sorted(web.probe.statements.items()):
        line(f"  {kind}", count / measured, float("nan"))
    line("transactions", web.probe.transactions / measured, float("nan"))
    line("rows written (execute wrapper rowcount)", web.probe.rows_written / measured, float("nan"))
    line("Redis round trips (client)", web.probe.redis_round_trips / measured, float("nan"))
    print("  workers")
    line("SQL statements", float("nan"), work.probe.statement_count / work.units)
    for kind, count in sorted(work.probe.statements.items()):
        line(f"  {kind}", float("nan"), count / work.units)
    line("transactions", float("nan"), work.probe.transactions / work.units)
    line("rows written (execute wrapper rowcount)", float("nan"), work.probe.rows_written / work.units)
    line("Redis round trips (client)", float("nan"), work.probe.redis_round_trips / work.units)

    whole: dict[str, Any] = {"orders": measured, "jobs_per_order": jobs_per_order}
    sql_order = web.probe.statement_count / measured + work.probe.statement_count / orders
    if web.postgres_rows or work.postgres_rows:
        print("\n  PostgreSQL rows written per order (pg_stat_user_tables), web + workers:")
        rows_total = 0.0
        per_table: dict[str, dict[str, float]] = {}
        for table in sorted(set(web.postgres_rows) | set(work.postgres_rows)):
            counts = {
                k: web.postgres_rows.get(table, {}).get(k, 0) / orders
                + work.postgres_rows.get(table, {}).get(k, 0) / orders
                for k in ("inserted", "updated", "deleted", "hot")
            }
            per_table[table] = counts
            rows_total += counts["inserted"] + counts["updated"] + counts["deleted"]
            print(
                f"    {table:28s} inserted {counts['inserted']:6.2f}  updated {counts['updated']:6.2f} "
                f"(HOT {counts['hot']:5.2f})  deleted {counts['deleted']:5.2f}"
            )
        print(f"    {'total':28s} {rows_total:6.2f} rows written per order")
        whole["pg_rows_per_order"] = per_table
        whole["pg_rows_written_per_order"] = rows_total
        wal = {}
        for ph in (web, work):
            if "bytes" in ph.wal:
                wal[ph.name] = ph.wal["bytes"] / orders
                print(
                    f"    WAL, {ph.name:8s} {ph.wal['bytes'] / orders:9.0f} bytes per order "
                    f"({ph.wal['fpi_bytes'] / orders:.0f} of them full-page images; {ph.wal['records']} records; "
                    f"all databases: {ph.wal['cluster_bytes'] / orders:.0f})"
                )
            else:
                print(
                    f"    WAL, {ph.name}: not attributed ({ph.wal.get('error')}); all databases "
                    f"{ph.wal.get('cluster_bytes', 0) / orders:.0f} bytes per order"
                )
        whole["wal_bytes_per_order"] = wal

    print("\n  Redis (the private server's own counters)")
    web_cmds, work_cmds = sum(web.redis_commands.values()), sum(work.redis_commands.values())
    line("commands (INFO commandstats)", web_cmds / orders, work_cmds / work.units)
    top = Counter(web.redis_commands) + Counter({k: v for k, v in work.redis_commands.items()})
    print(
        "    by command, per order (web + its jobs): "
        + ", ".join(f"{name} {count / orders:.2f}" for name, count in top.most_common(14))
    )
    line("bytes in (to Redis)", web.redis_in / orders, work.redis_in / work.units)
    line("bytes out (from Redis)", web.redis_out / orders, work.redis_out / work.units)
    line("memory held while queued (used_memory)", web.redis_memory / orders, float("nan"), "bytes")
    print(
        f"    idle workers meanwhile: {main_pass.idle_commands_per_s:.0f} commands/s, "
        f"{main_pass.idle_cpu_per_s * 1000:.0f} CPU ms/s ({args.worker_processes} processes; not taken off above)"
    )
    print("    keys left once every job is done (shape: keys, bytes each, TTL s):")
    for shape, info in sorted(main_pass.memory_after.items(), key=lambda kv: -kv[1]["keys"])[:12]:
        print(f"      {shape:52s} {info['keys']:7d} {info['bytes_each']:7.0f} {info['ttl_s']:8d}")
    # What stays in Redis once the jobs are done (claims, effect marks: a day), per order:
    # the keys that come with every order or job (MEMORY USAGE of each shape), not the
    # server's used_memory, which at a few thousand keys is mostly fixed overhead.
    retained_per_order = (
        sum(
            info["keys"] * info["bytes_each"]
            for info in main_pass.memory_after.values()
            if info["keys"] >= 0.2 * orders and info["ttl_s"] > 0
        )
        / orders
    )
    used_memory_per_order = (web.redis_memory + work.redis_memory) / orders
    print(
        f"    kept for their TTL: {retained_per_order:.0f} bytes per order by MEMORY USAGE of those keys "
        f"(used_memory grew {used_memory_per_order:.0f} bytes per order, fixed overheads included)"
    )

    print("\n  CPU time (ms)")
    web_cpu = web.cpu.get("web", 0.0) * 1000 / orders
    line("gunicorn processes", web_cpu, float("nan"))
    line("worker processes", float("nan"), work.cpu.get("workers", 0.0) * 1000 / work.units)
    if "postgres" in web.cpu:
        line("PostgreSQL backends", web.cpu["postgres"] * 1000 / orders, work.cpu["postgres"] * 1000 / work.units)
    line("Redis server", web.cpu["redis"] * 1000 / orders, work.cpu["redis"] * 1000 / work.units)
    line(
        "  of it running commands (commandstats usec)",
        web.redis_usec / 1000 / orders,
        work.redis_usec / 1000 / work.units,
    )

    print("\n  Tables after the run (rows, bytes with indexes, bytes per row):")
    for table, info in sizes.items():
        if info["rows"]:
            print(f"    {table:28s} {info['rows']:9d} {info['bytes']:12d} {info['bytes'] / info['rows']:9.0f}")

    print(
        f"\n  Pruning (jobs.monitoring.prune_finished_jobs, retention {prune['retention_days']} days): deleted "
        f"{prune['deleted']:.0f} jobs in {prune['seconds']:.2f} s ({prune['rows_per_s']:.0f}/s), "
        f"{prune['statements_per_1000']:.1f} statements per 1,000 jobs: {prune['statements']}"
    )

    if hot:
        print(
            f"\n  A hot row (record_analytics' transaction from 8 connections): one day's row for all "
            f"{hot['one row']:,.0f} transactions/s; a row per connection {hot['a row per connection']:,.0f}/s"
        )
        whole["hot_row_per_s"] = hot
    redis_cpu_per_order = (web.cpu["redis"] + work.cpu["redis"]) / orders
    if replayed and "seconds" in replayed:
        jobs_replayed = capture_jobs * replayed["copies"]
        rate = jobs_replayed / replayed["seconds"]
        print(
            f"\n  Redis ceiling: the recorded traffic of {capture_jobs} jobs ({replayed['commands']} client "
            f"commands, {replayed['lua_commands']} more inside scripts) replayed {replayed['copies']}x through "
            f"redis-cli --pipe: {rate:,.0f} jobs/s ({rate / jobs_per_order:,.0f} orders/s), Redis CPU "
            f"{replayed['redis_cpu_s']:.2f} s of {replayed['seconds']:.2f} s, {replayed['errors']} errors"
        )
        whole["replay_jobs_per_s"] = rate
        recorded_orders = capture_jobs / jobs_per_order
        print(
            "    commands per order by what they serve (the recording, scripts' commands included): "
            + ", ".join(f"{k} {v / recorded_orders:.1f}" for k, v in sorted(replayed["families"].items()))
        )
        per_cpu = jobs_replayed / replayed["redis_cpu_s"] if replayed["redis_cpu_s"] else float("nan")
        print(f"    per second of Redis CPU: {per_cpu:,.0f} jobs ({per_cpu / jobs_per_order:,.0f} orders)")
        whole["replay_jobs_per_redis_cpu_s"] = per_cpu
        whole["replay_orders_per_s"] = rate / jobs_per_order
    print(
        f"  Redis CPU per order in the real run: {redis_cpu_per_order * 1e6:.0f} us -> at most "
        f"{1 / redis_cpu_per_order:,.0f} orders/s per Redis process (estimate: one core, nothing else)"
    )

    per_job_worker_ms = work.cpu.get("workers", 0.0) * 1000 / work.units
    rows_per_order = whole.get("pg_rows_written_per_order", (web.probe.rows_written + work.probe.rows_written) / orders)
    whole["rows_written_per_order"] = rows_per_order
    job_bytes = sizes.get("jobs_job", {})
    job_row_bytes = job_bytes["bytes"] / job_bytes["rows"] if job_bytes.get("rows") else float("nan")
    wal_per_order = sum(whole.get("wal_bytes_per_order", {}).values())
    projection = project(
        web_cpu_ms=web_cpu,
        worker_cpu_ms=per_job_worker_ms,
        jobs_per_order=jobs_per_order,
        rows_per_order=rows_per_order,
        wal_per_order=wal_per_order,
        redis_commands_per_order=(web_cmds + work_cmds) / orders,
        job_row_bytes=job_row_bytes,
        retention_days=prune["retention_days"],
        redis_kept_per_order=retained_per_order,
    )

    whole.update(
        vendor=vendor,
        web_sql_per_order=web.probe.statement_count / measured,
        web_statements=dict(web.probe.statements),
        worker_sql_per_job=work.probe.statement_count / work.units,
        worker_statements={k: v / work.units for k, v in work.probe.statements.items()},
        worker_writes_per_job={k: v / work.units for k, v in work.probe.writes.items()},
        sql_per_order=sql_order,
        web_redis_round_trips_per_order=web.probe.redis_round_trips / measured,
        worker_redis_round_trips_per_job=work.probe.redis_round_trips / work.units,
        redis_commands_per_order_web=web_cmds / orders,
        redis_commands_per_job=work_cmds / work.units,
        redis_commands=dict(top),
        redis_bytes_in_per_order=web.redis_in / orders,
        redis_bytes_out_per_order=web.redis_out / orders,
        redis_bytes_in_per_job=work.redis_in / work.units,
        redis_bytes_out_per_job=work.redis_out / work.units,
        redis_memory_queued_per_order=web.redis_memory / orders,
        redis_keys_after=main_pass.memory_after,
        redis_retained_bytes_per_order=retained_per_order,
        redis_used_memory_per_order=used_memory_per_order,
        redis_idle_cpu_ms_per_s=meter_idle_cpu * 1000,
        web_cpu_ms_per_order=web_cpu,
        worker_cpu_ms_per_job=per_job_worker_ms,
        postgres_cpu_ms_per_order=web.cpu.get("postgres", 0.0) * 1000 / orders,
        postgres_cpu_ms_per_job=work.cpu.get("postgres", 0.0) * 1000 / work.units,
        redis_cpu_us_per_order=redis_cpu_per_order * 1e6,
        idle_worker_commands_per_s=main_pass.idle_commands_per_s,
        drain_seconds=work.seconds,
        tables=sizes,
        job_row_bytes=job_row_bytes,
        prune=prune,
        replay=replayed,
        projection=projection,
    )
    return whole


def project(
    *,
    web_cpu_ms: float,
    worker_cpu_ms: float,
    jobs_per_order: float,
    rows_per_order: float,
    wal_per_order: float,
    redis_commands_per_order: float,
    job_row_bytes: float,
    retention_days: int,
    redis_kept_per_order: float,
) -> list[dict[str, float]]:
    """The measured cost per order times 100, 1,000 and 10,000 orders a second: arithmetic,
    not a measurement. Printed and returned."""
    print("\n  Projection (arithmetic on the figures above, not measured):")
    print(
        f"  {'orders/s':>9s} {'web cores':>9s} {'worker cores':>12s} {'PG rows/s':>10s} {'WAL MB/s':>8s} "
        f"{'Redis cmds/s':>12s} {'jobs/day (M)':>12s} {'job GB/day':>10s} {'retained GB':>11s} "
        f"{'Redis GB (TTL)':>14s}"
    )
    projection = []
    for rate in RATES:
        jobs_per_day = rate * jobs_per_order * DAY
        row = {
            "orders_per_s": rate,
            "web_cores": rate * web_cpu_ms / 1000,
            "worker_cores": rate * jobs_per_order * worker_cpu_ms / 1000,
            "pg_rows_per_s": rate * rows_per_order,
            "wal_mb_per_s": rate * wal_per_order / 1e6,
            "redis_commands_per_s": rate * redis_commands_per_order,
            "jobs_per_day_m": jobs_per_day / 1e6,
            "job_gb_per_day": jobs_per_day * job_row_bytes / 1e9,
            "job_gb_retained": jobs_per_day * job_row_bytes * retention_days / 1e9,
            "redis_gb_claims": rate * DAY * redis_kept_per_order / 1e9,
        }
        projection.append(row)
        print(
            f"  {rate:9,d} {row['web_cores']:9.1f} {row['worker_cores']:12.1f} {row['pg_rows_per_s']:10,.0f} "
            f"{row['wal_mb_per_s']:8.1f} {row['redis_commands_per_s']:12,.0f} {row['jobs_per_day_m']:12.1f} "
            f"{row['job_gb_per_day']:10.1f} {row['job_gb_retained']:11.0f} {row['redis_gb_claims']:14.1f}"
        )
    return projection


def headline(whole: dict[str, Any], vendor: str) -> str:
    commands = whole["redis_commands_per_order_web"] + whole["redis_commands_per_job"] * whole["jobs_per_order"]
    # SQLite's driver reports no rows for INSERT … RETURNING: rows written only from PostgreSQL.
    rows = f"{whole['rows_written_per_order']:.1f} rows written, " if vendor == "postgresql" else ""
    return (
        f"per order: {whole['sql_per_order']:.1f} SQL statements, {rows}{commands:.0f} Redis commands; "
        f"web {whole['web_cpu_ms_per_order']:.1f} CPU ms/order, worker {whole['worker_cpu_ms_per_job']:.1f} CPU ms/job"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare_database(args.database_url)
    probe_dir = Path(tempfile.mkdtemp(prefix="buzzer-capacity-probe-"))
    try:
        with private_redis(None) as redis_url:
            env = environment(args.database_url, redis_url, probe_dir)
            key, skus, namespace = setup(env, args.items)
            from django.db import connection

            vendor = connection.vendor
            database = connection.settings_dict["NAME"] if vendor == "postgresql" else ""
            pg_url = args.database_url if vendor == "postgresql" else ""
            stack = Stack(args, env, key, skus, namespace)
            meter = Meter(stack.client, pg_url, database)
            main_pass = stack.run(args.orders, meter)
            sizes = table_sizes(existing_tables())

            replayed: dict[str, Any] = {}
            capture_jobs = 0
            if args.capture_orders:
                from jobs.models import Job

                port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
                jobs_before = Job.objects.count()
                monitor: list[Monitor] = []
                lines: list[str] = []
                stack.run(
                    args.capture_orders,
                    meter,
                    on_start=lambda: monitor.append(Monitor(port)),
                    on_drained=lambda: lines.extend(monitor[0].stop()),
                )
                capture_jobs = Job.objects.count() - jobs_before
                replayed = replay(lines, port, args.replay_copies, stack.client)
            prune = measure_prune()
            hot = measure_hot_row(pg_url, 2.0 if args.quick else 10.0) if pg_url else {}
            if meter.wal:
                meter.wal.close()
            whole = report(
                main_pass,
                sizes=sizes,
                prune=prune,
                replayed=replayed,
                capture_jobs=capture_jobs,
                vendor=vendor,
                args=args,
                meter_idle_cpu=meter.redis_idle_cpu,
                hot=hot,
            )
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(whole, indent=2, default=str))
    emit(
        "capacity",
        figure=headline(whole, vendor),
        bar="",
        passed=None,
        **{k: v for k, v in whole.items() if not isinstance(v, dict | list)},
    )


if __name__ == "__main__":
    main()
