"""The Job table at tens of millions of rows, partitioned by day or not (issue 15).

    .venv/bin/python bench/job_partitions.py --database-url postgres://postgres@127.0.0.1:5432/capacity_part
    .venv/bin/python bench/job_partitions.py --database-url … --rows 20000000 --days 14
    .venv/bin/python bench/job_partitions.py --database-url … --quick     # 200,000 rows

PostgreSQL only. A scratch database of its own (dropped and created; `manage.py migrate`
gives it the real `jobs_job` and the function its search index uses) gets two copies of
the same `--rows` jobs spread over `--days` days: `job_plain`, shaped exactly as
`jobs_job` (its columns and its 15 indexes), and `job_part`, the same declared
`PARTITION BY RANGE (created_at)` with one partition a day. A partitioned table's unique
indexes must contain the partition key, so there the primary key is `(id, created_at)`
and the job key's unique index is `(key, created_at)`: the key no longer stops a second
job for the same event across days (what `jobs.publish` relies on) — that would need a
table of keys of its own.

The rows look like an order's jobs: three actors, `succeeded` but for 0.05% `dead` with
an error and the last hour's still `enqueued`, kwargs with an order id, a job key. They
are generated in the server (`INSERT … SELECT … generate_series`), indexes built after
the load, then `ANALYZE`. Measured, each table in turn:

- the load: rows per second of the bulk insert, and the index build;
- inserting as the app does at that size: one `INSERT … ON CONFLICT DO NOTHING` of an
  order's 3 jobs per transaction, from one connection, for `--seconds` (each table
  twice, alternating, medians: so are the figures below);
- the batch writer's update of a job by its id alone, and with its `created_at`: the
  shared buffers one such UPDATE touches and the tables its plan scans (EXPLAIN
  ANALYZE BUFFERS, rolled back) — without `created_at` the partitioned table cannot
  prune, and every partition's index is probed;
- the console's queries: the newest jobs (`ORDER BY created_at DESC LIMIT 100`), a status
  filter (`status = 'dead'` newest first), the count of dead jobs, and the list's capped
  count (median of 5 runs, after one to warm the cache);
- retention: deleting the oldest day — `DROP TABLE` of its partition (after `DETACH`)
  against `DELETE` of the same rows from the plain table (then the `VACUUM` that gives
  their space back for reuse) — time and WAL written (the server's WAL position, which
  other databases on a shared server also move: an upper bound).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs_throughput import prepare_database  # noqa: E402
from bench.result import emit  # noqa: E402

# Rows are dated back from here, so that every run builds the same days.
END = datetime(2026, 11, 30, tzinfo=UTC)

ROWS_SQL = """
INSERT INTO {table} (id, actor_name, queue_name, args, kwargs, options, status, attempts, last_error,
    error_fingerprint, traceback, key, event, object_type, object_id, worker, broker_message_id,
    created_at, due_at, enqueued_at, started_at, finished_at)
SELECT gen_random_uuid(), a.actor, 'default', '[]'::jsonb,
    jsonb_build_object('order_id', o.order_id), '{{}}'::jsonb,
    CASE WHEN s.created > %(recent)s THEN 'enqueued' WHEN mod(g, 2000) = 0 THEN 'dead' ELSE 'succeeded' END,
    1,
    CASE WHEN mod(g, 2000) = 0 THEN 'SMTPServerDisconnected: Connection unexpectedly closed' ELSE '' END,
    CASE WHEN mod(g, 2000) = 0 THEN 'f' || mod(g, 7)::text ELSE '' END,
    '', 'order.placed:' || a.actor || ':orders.order:' || o.order_id, 'order.placed', 'orders.order', o.order_id,
    CASE WHEN s.created > %(recent)s THEN '' ELSE 'worker-' || mod(g, 8)::text END, '',
    s.created, NULL, s.created + interval '2 ms',
    CASE WHEN s.created > %(recent)s THEN NULL ELSE s.created + interval '40 ms' END,
    CASE WHEN s.created > %(recent)s THEN NULL ELSE s.created + interval '60 ms' END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + (g * %(step)s) * interval '1 microsecond' AS created) s
CROSS JOIN LATERAL (SELECT (ARRAY['orders.tasks.send_confirmation_email', 'orders.tasks.update_inventory',
    'orders.tasks.record_analytics'])[1 + mod(g, 3)::int] AS actor) a
CROSS JOIN LATERAL (SELECT md5((g / 3)::text)::uuid::text AS order_id) o
"""

CONSOLE_QUERIES = {
    "newest 100": "SELECT id, actor_name, status, created_at FROM {t} ORDER BY created_at DESC LIMIT 100",
    "dead, newest 100": (
        "SELECT id, actor_name, status, created_at FROM {t} WHERE status = 'dead' ORDER BY created_at DESC LIMIT 100"
    ),
    "count dead": "SELECT count(*) FROM {t} WHERE status = 'dead'",
    "capped count (1,000)": "SELECT count(*) FROM (SELECT 1 FROM {t} LIMIT 1000) capped",
    "an order's jobs": "SELECT id, status FROM {t} WHERE object_type = 'orders.order' AND object_id = %(object_id)s",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/capacity_part")
    parser.add_argument("--rows", type=int, default=None, help="jobs in each table (default 10,000,000)")
    parser.add_argument("--days", type=int, default=14, help="days they span: one partition each")
    parser.add_argument("--seconds", type=float, default=None, help="of app-like inserts per table (default 10)")
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 3 s of inserts")
    parser.add_argument("--keep", action="store_true", help="leave the scratch database in place")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 200_000 if args.quick else 10_000_000
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 10.0
    return args


def migrate(url: str) -> None:
    env = dict(
        os.environ,
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="config.settings",
        BUZZER_ENV_FILE="/nonexistent/.env",
        SECRET_KEY="benchmark-only-secret-key-" + "x" * 30,
        DEBUG="0",
        BUZZER_TESTING="0",
        LOG_LEVEL="WARNING",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)


def timed(conn: Any, sql: str, params: Any = None) -> float:
    started = time.perf_counter()
    conn.execute(sql, params)
    return time.perf_counter() - started


def wal_lsn(conn: Any) -> int:
    (text,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def index_definitions(conn: Any) -> list[str]:
    return [
        row[0]
        for row in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'jobs_job' ORDER BY indexname")
    ]


def for_table(definition: str, table: str, partitioned: bool) -> str:
    """jobs_job's index, on `table`; unique ones on the partitioned table get created_at."""
    sql = definition.replace("ON public.jobs_job ", f"ON public.{table} ")
    name = sql.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
    sql = sql.replace(f" INDEX {name} ON ", f" INDEX {table}_{name.removeprefix('jobs_job_')} ON ", 1)
    if partitioned and "UNIQUE" in sql:
        sql = sql[: sql.rindex(")")] + ", created_at)"
    return sql


def create_tables(conn: Any, days: int) -> None:
    conn.execute("CREATE TABLE job_plain (LIKE jobs_job INCLUDING DEFAULTS)")
    conn.execute("CREATE TABLE job_part (LIKE jobs_job INCLUDING DEFAULTS) PARTITION BY RANGE (created_at)")
    start = END - timedelta(days=days)
    for day in range(days + 1):  # and tomorrow's, as pg_partman's premake keeps ahead
        low, high = start + timedelta(days=day), start + timedelta(days=day + 1)
        conn.execute(
            f"CREATE TABLE job_part_{low:%Y%m%d} PARTITION OF job_part "
            f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
        )


def load(conn: Any, table: str, rows: int, days: int) -> float:
    """Insert `rows` jobs spread evenly over the days; returns seconds."""
    start = END - timedelta(days=days)
    step = days * 86_400 * 1_000_000 // rows  # microseconds between two jobs
    recent = END - timedelta(hours=1)
    started = time.perf_counter()
    chunk = 1_000_000
    for first in range(0, rows, chunk):
        last = min(rows, first + chunk) - 1
        conn.execute(
            ROWS_SQL.format(table=table),
            {"first": first, "last": last, "start": start, "step": step, "recent": recent},
        )
        print(f"  {table}: {last + 1:,} rows", flush=True)
    return time.perf_counter() - started


def build_indexes(conn: Any, table: str, partitioned: bool, definitions: list[str]) -> float:
    started = time.perf_counter()
    for definition in definitions:
        conn.execute(for_table(definition, table, partitioned))
    conn.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def app_inserts(conn: Any, table: str, seconds: float) -> float:
    """Transactions of three jobs (an order's), as `jobs.publish` writes them; rows/s."""
    now = END - timedelta(minutes=5)
    sql = (
        f"INSERT INTO {table} (id, actor_name, queue_name, args, kwargs, options, status, attempts, last_error, "  # noqa: S608
        "error_fingerprint, traceback, key, event, object_type, object_id, worker, broker_message_id, created_at) "
        "SELECT gen_random_uuid(), a, 'default', '[]', jsonb_build_object('order_id', o), '{}', 'pending', 0, '', '', "
        "'', 'order.placed:' || a || ':orders.order:' || o, 'order.placed', 'orders.order', o, '', '', %s "
        "FROM unnest(ARRAY['orders.tasks.send_confirmation_email', 'orders.tasks.update_inventory', "
        "'orders.tasks.record_analytics']) AS a, (SELECT gen_random_uuid()::text AS o) AS x "
        "ON CONFLICT DO NOTHING"
    )
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        with conn.transaction():
            conn.execute(sql, (now,))
        done += 3
    return done / (time.perf_counter() - started)


def update_cost(conn: Any, table: str, count: int = 200) -> dict[str, float]:
    """What the batch writer's UPDATE of one job touches: shared buffers (hit or read,
    planning included) per statement, mean over `count` jobs of the last hour, by id
    alone and by id with the job's created_at; and the partitions its plan names.
    Exact counts (EXPLAIN ANALYZE BUFFERS), each update rolled back."""
    jobs = conn.execute(
        f"SELECT id, created_at FROM {table} WHERE created_at > %s LIMIT %s",  # noqa: S608
        (END - timedelta(hours=1), count),
    ).fetchall()
    result: dict[str, float] = {}
    for label, where in (("by id", "id = %s"), ("by id and created_at", "id = %s AND created_at = %s")):
        buffers = relations = 0
        for job_id, created_at in jobs:
            params = (job_id,) if label == "by id" else (job_id, created_at)
            sql = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) UPDATE {table} SET status = 'running' WHERE {where}"  # noqa: S608
            with conn.transaction(force_rollback=True):
                ((plan,),) = conn.execute(sql, params).fetchall()
            top = plan[0]
            for node in (top["Plan"], top.get("Planning", {})):
                buffers += node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
            relations += _relations(top["Plan"])
        result[f"buffers {label}"] = buffers / len(jobs)
        result[f"relations {label}"] = relations / len(jobs)
    return result


def _relations(node: dict[str, Any]) -> int:
    """Scans of a table in a plan (the UPDATE's target itself not counted)."""
    own = 1 if "Relation Name" in node and node.get("Node Type") != "ModifyTable" else 0
    return own + sum(_relations(child) for child in node.get("Plans", []))


def console(conn: Any, table: str) -> dict[str, float]:
    """Median milliseconds of each console query (5 runs after a warm one)."""
    newest = f"SELECT object_id FROM {table} ORDER BY created_at DESC LIMIT 1"  # noqa: S608
    (object_id,) = conn.execute(newest).fetchone()
    result = {}
    for label, sql in CONSOLE_QUERIES.items():
        times = []
        for _ in range(6):
            started = time.perf_counter()
            conn.execute(sql.format(t=table), {"object_id": object_id}).fetchall()
            times.append(time.perf_counter() - started)
        result[label] = statistics.median(times[1:]) * 1000
    return result


def drop_oldest_day(conn: Any, days: int) -> dict[str, dict[str, float]]:
    low = END - timedelta(days=days)
    high = low + timedelta(days=1)
    (rows,) = conn.execute(
        "SELECT count(*) FROM job_plain WHERE created_at >= %s AND created_at < %s", (low, high)
    ).fetchone()
    result: dict[str, dict[str, float]] = {}
    lsn = wal_lsn(conn)
    started = time.perf_counter()
    conn.execute(f"ALTER TABLE job_part DETACH PARTITION job_part_{low:%Y%m%d}")
    conn.execute(f"DROP TABLE job_part_{low:%Y%m%d}")
    result["drop partition"] = {"rows": rows, "seconds": time.perf_counter() - started, "wal": wal_lsn(conn) - lsn}
    lsn = wal_lsn(conn)
    seconds = timed(conn, "DELETE FROM job_plain WHERE created_at >= %s AND created_at < %s", (low, high))
    result["DELETE"] = {"rows": rows, "seconds": seconds, "wal": wal_lsn(conn) - lsn}
    lsn = wal_lsn(conn)
    seconds = timed(conn, "VACUUM job_plain")
    result["VACUUM after DELETE"] = {"rows": rows, "seconds": seconds, "wal": wal_lsn(conn) - lsn}
    return result


def size(conn: Any, table: str) -> int:
    if table == "job_part":
        (total,) = conn.execute(
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'job_part'::regclass"
        ).fetchone()
        return int(total or 0)
    (total,) = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
    return int(total)


def measure(conn: Any, table: str, seconds: float, step: Callable[[str], None]) -> dict[str, Any]:
    step(f"{table}: inserts as the app does")
    inserts = app_inserts(conn, table, seconds)
    step(f"{table}: updates by id")
    updates = update_cost(conn, table)
    step(f"{table}: console queries")
    queries = console(conn, table)
    return {"app_inserts_per_s": inserts, "update": updates, "console_ms": queries}


def median_of(runs: list[Any]) -> Any:
    """The median of each figure (nested dictionaries alike)."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: median_of([run[key] for run in runs]) for key in first}
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import psycopg

    prepare_database(args.database_url)
    migrate(args.database_url)
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {text}", flush=True)

    results: dict[str, Any] = {"rows": args.rows, "days": args.days}
    try:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")  # this session's index builds only
            definitions = index_definitions(conn)
            create_tables(conn, args.days)
            results["indexes"] = len(definitions)
            for table, partitioned in (("job_plain", False), ("job_part", True)):
                step(f"{table}: loading {args.rows:,} rows")
                seconds = load(conn, table, args.rows, args.days)
                step(f"{table}: {len(definitions)} indexes")
                index_seconds = build_indexes(conn, table, partitioned, definitions)
                results[table] = {
                    "load_rows_per_s": args.rows / seconds,
                    "load_seconds": seconds,
                    "index_seconds": index_seconds,
                    "bytes": size(conn, table),
                }
            # Alternating, twice: on a shared machine the load moves between two runs.
            rounds: dict[str, list[dict[str, Any]]] = {"job_plain": [], "job_part": []}
            for _ in range(2):
                for table in rounds:
                    rounds[table].append(measure(conn, table, args.seconds / 2, step))
            for table, runs in rounds.items():
                results[table].update(median_of(runs))
            step("retention: the oldest day")
            results["retention"] = drop_oldest_day(conn, args.days)
    finally:
        if not args.keep:
            _drop(args.database_url)  # gives the disk back
    report(results, args)


def _drop(url: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}"')


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    plain, part = results["job_plain"], results["job_part"]
    print(
        f"\n{args.rows:,} jobs over {args.days} days ({args.rows // args.days:,} a day), "
        f"{results['indexes']} indexes (maintenance_work_mem 512MB); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(f"  {'':34s} {'plain':>12s} {'partitioned':>12s}")
    rows = [
        ("bulk load, rows/s", plain["load_rows_per_s"], part["load_rows_per_s"], ",.0f"),
        ("index build, s", plain["index_seconds"], part["index_seconds"], ".0f"),
        ("size with indexes, GB", plain["bytes"] / 1e9, part["bytes"] / 1e9, ".2f"),
        ("bytes per job", plain["bytes"] / args.rows, part["bytes"] / args.rows, ".0f"),
        ("app inserts (3 per txn), rows/s", plain["app_inserts_per_s"], part["app_inserts_per_s"], ",.0f"),
        ("UPDATE by id: buffers", plain["update"]["buffers by id"], part["update"]["buffers by id"], ".1f"),
        ("UPDATE by id: tables scanned", plain["update"]["relations by id"], part["update"]["relations by id"], ".0f"),
        (
            "UPDATE by id + created_at: buffers",
            plain["update"]["buffers by id and created_at"],
            part["update"]["buffers by id and created_at"],
            ".1f",
        ),
    ]
    rows += [
        (f"{label}, ms", plain["console_ms"][label], part["console_ms"][label], ".2f") for label in CONSOLE_QUERIES
    ]
    for label, a, b, spec in rows:
        print(f"  {label:34s} {a:>12{spec}} {b:>12{spec}}")
    print("\n  Retention, the oldest day:")
    for label, figures in results["retention"].items():
        print(
            f"    {label:22s} {figures['rows']:>10,.0f} rows  {figures['seconds']:8.2f} s  "
            f"WAL {figures['wal'] / 1e6:8.1f} MB (server-wide)"
        )
    retention = results["retention"]
    emit(
        "job_partitions",
        figure=(
            f"{args.rows:,} jobs: drop a day {retention['drop partition']['seconds']:.2f} s vs DELETE "
            f"{retention['DELETE']['seconds']:.2f} s (+ VACUUM {retention['VACUUM after DELETE']['seconds']:.1f} s); "
            f"newest 100 {plain['console_ms']['newest 100']:.1f} / {part['console_ms']['newest 100']:.1f} ms"
        ),
        bar="",
        passed=None,
        rows=args.rows,
        days=args.days,
        plain_app_inserts_per_s=round(plain["app_inserts_per_s"]),
        part_app_inserts_per_s=round(part["app_inserts_per_s"]),
        plain_update_buffers=round(plain["update"]["buffers by id"], 1),
        part_update_buffers=round(part["update"]["buffers by id"], 1),
        part_update_buffers_with_created_at=round(part["update"]["buffers by id and created_at"], 1),
        drop_seconds=round(retention["drop partition"]["seconds"], 3),
        delete_seconds=round(retention["DELETE"]["seconds"], 2),
        vacuum_seconds=round(retention["VACUUM after DELETE"]["seconds"], 2),
    )


if __name__ == "__main__":
    main()
