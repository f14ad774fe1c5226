"""Do the jobs console's pages stay fast when the job table grows a thousandfold?

    .venv/bin/python bench/admin_scale.py                        # SQLite, 1,000 and 1,000,000 jobs
    .venv/bin/python bench/admin_scale.py --database-url postgres://postgres@127.0.0.1:5432/bench_admin
    .venv/bin/python bench/admin_scale.py --rows 200000 --reuse  # a quicker look, keep built databases
    .venv/bin/python bench/admin_scale.py --insert-cost          # what the search machinery costs an insert

For each size (--small, 1,000, and --rows) it builds a database of its own (SQLite:
var/bench/admin-<rows>.sqlite3; PostgreSQL: the named database with the row count
appended, created and dropped by the bench, never the `make run` one), migrates it and
loads the jobs fast (executemany / COPY, through the search triggers or index; then
VACUUM ANALYZE on PostgreSQL, as autovacuum would): three jobs per
order, 1% dead (half of their errors carrying ids, e-mail addresses or numbers), the
rest mostly succeeded, with e-mail addresses and SKUs among the arguments. Then, with a
process per size kept running (DEBUG off), it times every page of the console with
Django's test Client logged in as a superuser (job list, each list filter, each kind of
search, dead letters, the queue dashboard, a job's page): one warm-up request per page,
then --rounds requests of each page from each size in turn, interleaved request by
request so that the machine's drifting load weighs on both alike; each figure is a
median. It prints both sizes side by side with the ratio. The bar (issue 10): every page
at the big size in at most 2x its time at 1,000 rows. `--quick`
(bench/summary.py): 100,000 rows, fewer requests, and databases built by an earlier run
are kept (`--reuse`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.result import emit  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=dt_timezone.utc)
SPAN = timedelta(days=30)
ACTORS = ("send_confirmation_email", "update_inventory", "record_analytics")
SKUS = [f"SKU-{n:05d}" for n in range(2000)]
ERRORS_WITH_IDS = (
    "LookupError: Order {order} not found",
    "SMTPRecipientsRefused: {email} refused: mailbox unavailable",
    "HTTPError: 503 Server Error for url https://hooks.example.com/orders/{n}",
    'IntegrityError: duplicate key value violates unique constraint "stock_{n}"',
)
ERRORS_WITHOUT_IDS = (
    "SMTPServerDisconnected: relay gone",
    "ConnectionError: inventory service unavailable",
    "TimeoutError: analytics collector did not answer",
    "ValueError: price missing",
)
COLUMNS = (
    "id", "actor_name", "queue_name", "args", "kwargs", "options", "status", "attempts", "last_error",
    "error_fingerprint", "traceback", "key", "event", "object_type", "object_id", "worker", "broker_message_id",
    "created_at", "due_at", "enqueued_at", "started_at", "finished_at",
)  # fmt: skip
# The status of the i-th job (per 10,000): 1% dead, a few waiting, running, retrying.
STATUSES = [("dead", 100), ("retrying", 10), ("enqueued", 30), ("pending", 5), ("running", 5),
            ("discarded", 10), ("cancelled", 5), ("scheduled", 5)]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 7 requests, --reuse (unless given)")
    parser.add_argument("--rows", type=int, default=None, help="jobs in the big database (default 1,000,000)")
    parser.add_argument("--small", type=int, default=1_000, help="jobs in the small database")
    parser.add_argument("--rounds", type=int, default=None, help="timed requests per page and size (median; 15)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""),
                        help="postgres://…/bench_admin (default: SQLite files under var/bench/)")  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="for the dashboard")
    parser.add_argument("--reuse", action="store_true", help="keep a database built earlier with as many rows")
    parser.add_argument("--insert-cost", action="store_true", help="time inserts with and without the search")
    parser.add_argument("--explain", action="store_true", help="print the plan of each page's job queries (big db)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rows = args.rows or (100_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (7 if args.quick else 15)
    args.reuse = args.reuse or args.quick
    return args


def database_url(base: str, rows: int) -> str:
    if not base:
        return f"sqlite:///{ROOT / 'var' / 'bench' / f'admin-{rows}.sqlite3'}"
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}_{rows}"))


def setup_django(url: str, redis_url: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "BUZZER_TESTING": "0",
            "BUZZER_BROKER": "stub",  # nothing is sent; the dashboard reads Redis at REDIS_URL
            "BUZZER_ENV_FILE": "/nonexistent/.env",
            "DEBUG": "0",
            "SECRET_KEY": "benchmark-only-secret-key-" + "x" * 30,
            "ALLOWED_HOSTS": "testserver,localhost",
            "DATABASE_URL": url,
            "DATABASE_POOL": "0",
            "REDIS_URL": redis_url,
            "BROKER_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "SECURE_SSL_REDIRECT": "0",  # the test client speaks plain HTTP
        }
    )
    import warnings

    warnings.filterwarnings("ignore", message="No directory at")
    import django
    from django.conf import settings

    django.setup()
    # Production's manifest needs a collectstatic; a plain storage costs the same per URL.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# --- building -----------------------------------------------------------------------------
def create_database(url: str) -> None:
    """A fresh database: a new SQLite file, or DROP + CREATE on the PostgreSQL server."""
    if url.startswith("sqlite"):
        path = Path(urlsplit(url).path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", ".rows"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("bench_"):
        raise SystemExit(f"refusing to drop {name!r}: the bench only drops databases named bench_*")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def marker(url: str) -> Path:
    return ROOT / "var" / "bench" / f"{urlsplit(url).path.strip('/').replace('/', '_')}.rows"


def rows_for(count: int, seed: int = 10) -> Any:
    """The jobs, newest first: three per order, spread evenly over SPAN."""
    from jobs.fingerprints import fingerprint

    rnd = random.Random(seed)
    cycle = [status for status, per in STATUSES for _ in range(per)]
    step = SPAN / count
    order = ""
    for i in range(count):
        if i % 3 == 0:
            order = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            email = f"customer{rnd.randrange(max(count // 15, 10))}@example.com"
            sku = rnd.choice(SKUS)
        actor = ACTORS[i % 3]
        created = NOW - step * i
        slot = rnd.randrange(10_000)
        status = cycle[slot] if slot < len(cycle) else "succeeded"
        kwargs: dict[str, Any] = {"order_id": order}
        if actor == "send_confirmation_email":
            kwargs["email"] = email
        elif actor == "update_inventory":
            kwargs["sku"] = sku
        error = ""
        if status in ("dead", "retrying", "discarded"):
            if rnd.random() < 0.5:
                error = rnd.choice(ERRORS_WITH_IDS).format(order=order, email=email, n=rnd.randrange(100_000))
            else:
                error = rnd.choice(ERRORS_WITHOUT_IDS)
        finished = status in ("succeeded", "dead", "discarded", "cancelled")
        started = status in ("succeeded", "dead", "discarded", "running", "retrying")
        yield (
            uuid.UUID(int=rnd.getrandbits(128), version=4),
            actor,
            "premium" if i % 10 == 0 else "default",
            "[]",
            json.dumps(kwargs),
            "{}",
            status,
            3 if error else (1 if started else 0),
            error,
            fingerprint(actor, error) if error and status == "dead" else "",
            "Traceback (most recent call last):\n  ...\n" + error if error else "",
            None,
            "order.placed",
            "orders.order",
            order,
            "bench-worker" if started else "",
            "",
            created,
            created + timedelta(minutes=5) if status == "scheduled" else None,
            created if status not in ("pending", "scheduled") else None,
            created + timedelta(milliseconds=20) if started else None,
            created + timedelta(milliseconds=80) if finished else None,
        )


def build(url: str, count: int, reuse: bool) -> None:
    from django.core.management import call_command
    from django.db import connection, transaction

    mark = marker(url)
    if reuse and mark.exists() and mark.read_text() == str(count):
        call_command("migrate", verbosity=0)  # a database built before a new migration
        _settle(connection)
        return
    create_database(url)
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    table_columns = ", ".join(COLUMNS)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor
            batch: list[tuple[Any, ...]] = []
            for row in rows_for(count):
                batch.append(row)
                if len(batch) == 100_000:
                    _copy(raw, table_columns, batch)
                    batch = []
            if batch:
                _copy(raw, table_columns, batch)
    else:
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        sql = f"INSERT INTO jobs_job ({table_columns}) VALUES ({placeholders})"  # noqa: S608 - constants
        batch = []
        for row in rows_for(count):
            batch.append(tuple(_sqlite(value) for value in row))
            if len(batch) == 50_000:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.executemany(sql, batch)
                batch = []
        if batch:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(sql, batch)
    _settle(connection)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(str(count))
    print(f"  loaded {count:,} jobs in {time.monotonic() - started:.1f} s", file=sys.stderr)


def _settle(connection: Any) -> None:
    """PostgreSQL: VACUUM ANALYZE, what autovacuum does in production after a load like
    this (statistics, and the visibility map that lets an index-only scan skip the heap;
    a COPY leaves it empty). SQLite: nothing, as Django leaves it (no ANALYZE, no stat
    tables): the plans are those of a database nobody tuned."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def _sqlite(value: Any) -> Any:
    """As Django stores it in SQLite: UUIDs as 32 hex digits, datetimes as naive UTC text."""
    if isinstance(value, uuid.UUID):
        return value.hex
    return str(value.astimezone(dt_timezone.utc).replace(tzinfo=None)) if isinstance(value, datetime) else value


def _copy(raw: Any, columns: str, batch: list[tuple[Any, ...]]) -> None:
    with raw.copy(f"COPY jobs_job ({columns}) FROM STDIN") as copy:
        for row in batch:
            copy.write_row(row)
    raw.connection.commit()


# --- timing -------------------------------------------------------------------------------
def pages() -> list[tuple[str, str, dict[str, str], str]]:
    """(label, path, query, text the page must show) for every page of the console."""
    from jobs.models import Job

    dead = Job.objects.filter(status="dead").order_by("-created_at")
    middle = dead[dead.count() // 2]  # a job from the middle of the table, not the newest
    same_order = Job.objects.filter(object_type="orders.order", object_id=middle.object_id)
    email_job = same_order.get(actor_name="send_confirmation_email")
    sku_job = same_order.get(actor_name="update_inventory")
    words = "inventory service unavailable"
    short = lambda job: str(job.pk)[:8]  # noqa: E731
    return [
        ("job list", "/admin/jobs/job/", {}, ""),
        ("filter status=dead", "/admin/jobs/job/", {"status__exact": "dead"}, ""),
        ("filter status=retrying", "/admin/jobs/job/", {"status__exact": "retrying"}, ""),
        ("filter status=succeeded", "/admin/jobs/job/", {"status__exact": "succeeded"}, ""),
        ("filter actor", "/admin/jobs/job/", {"actor": "update_inventory"}, ""),
        ("filter queue", "/admin/jobs/job/", {"queue": "premium"}, ""),
        ("filter created 1h", "/admin/jobs/job/", {"created": "1h"}, ""),
        ("filter created 7d", "/admin/jobs/job/", {"created": "7d"}, ""),
        ("filter dead + actor", "/admin/jobs/job/", {"status__exact": "dead", "actor": "send_confirmation_email"}, ""),
        (
            "filter error group",
            "/admin/jobs/job/",
            {"status__exact": "dead", "fingerprint": middle.error_fingerprint},
            "this group",
        ),
        ("search job id", "/admin/jobs/job/", {"q": str(middle.pk)}, short(middle)),
        ("search short id", "/admin/jobs/job/", {"q": str(middle.pk)[:8]}, short(middle)),
        ("search actor", "/admin/jobs/job/", {"q": "update_inventory"}, ""),
        ("search order id", "/admin/jobs/job/", {"q": middle.object_id}, short(middle)),
        ("search e-mail", "/admin/jobs/job/", {"q": email_job.kwargs["email"]}, short(email_job)),
        ("search SKU", "/admin/jobs/job/", {"q": sku_job.kwargs["sku"]}, ""),
        ("search error text", "/admin/jobs/job/", {"q": f"error: {words}"}, ""),
        ("dead letters", "/admin/jobs/job/dead-letters/", {}, "dead-letter-groups"),
        ("dead letters page 2", "/admin/jobs/job/dead-letters/", {"p": "2"}, ""),
        ("queue dashboard", "/admin/jobs/dashboard/", {}, ""),
        ("job detail", f"/admin/jobs/job/{middle.pk}/change/", {}, str(middle.pk)),
    ]


def serve() -> None:
    """Answer the parent's requests, one page view each: a line naming the page in, a line
    of JSON out ([total ms, SQL ms]). The first line out lists the pages with the rows
    each shows (after one request that checks the page and warms it up)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    sql_seconds: list[float] = []

    def timed_sql(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_seconds.append(time.perf_counter() - started)

    user = get_user_model().objects.filter(username="bench").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-only-password")
    client = Client()
    client.force_login(user)
    views = {label: (path, query) for label, path, query, _ in pages()}
    shown: dict[str, int] = {}
    for label, path, query, expect in pages():
        response = client.get(path, query)
        body = response.content.decode()
        if response.status_code != 200 or (expect and expect not in body):
            raise SystemExit(f"{label}: {response.status_code}, expected {expect!r} in the page")
        shown[label] = body.count('class="action-checkbox"') or body.count("<tr data-actor=")
    print(json.dumps(shown), flush=True)
    for line in sys.stdin:
        path, query = views[line.strip()]
        sql_seconds.clear()
        with connection.execute_wrapper(timed_sql):
            started = time.perf_counter()
            client.get(path, query)
            took = time.perf_counter() - started
        print(json.dumps([took * 1000, sum(sql_seconds) * 1000]), flush=True)


def explain() -> None:
    """Each page's queries on the job tables, with the database's plan for them."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    for label, path, query, _ in pages():
        with CaptureQueriesContext(connection) as captured:
            client.get(path, query)
        print(f"\n## {label}")
        for q in captured.captured_queries:
            if "jobs_job" not in q["sql"] or q["sql"].startswith(("SAVEPOINT", "RELEASE")):
                continue
            print(f"  {q['sql'][:400]}")
            with connection.cursor() as cursor:
                cursor.execute(prefix + q["sql"])
                for row in cursor.fetchall():
                    print(f"      {row[-1]}")


def worker(args: argparse.Namespace) -> None:
    url = database_url(args.database_url, args.worker)
    setup_django(url, args.redis_url)
    build(url, args.worker, args.reuse)
    if args.explain:
        explain()
        return
    serve()


# --- insert cost ---------------------------------------------------------------------------
FINGERPRINT_INDEX_0004 = (
    "CREATE INDEX job_status_fingerprint_idx ON jobs_job (status, error_fingerprint, finished_at, queue_name)"
)
DEAD_GROUPS_INDEX = (  # migration 0009: dead rows only
    "CREATE INDEX job_dead_groups_idx ON jobs_job (status, error_fingerprint, finished_at, queue_name) "
    "WHERE status = 'dead'"
)
OBJECT_INDEX_0001 = "CREATE INDEX job_object_idx ON jobs_job (object_type, object_id)"


def _search_states(vendor: str) -> dict[str, list[str]]:
    """The statements that put the job table in each state, from `without` (no search
    machinery, no fingerprint index) to what the migrations install on this database."""
    from importlib import import_module

    m4 = import_module("jobs.migrations.0004_error_fingerprints_and_search")
    m5 = import_module("jobs.migrations.0005_search_values_index_on_postgresql")
    m9 = import_module("jobs.migrations.0009_cheaper_job_inserts")
    backfill = ("INSERT", "TRUNCATE")  # what fills or empties the tables; the rest creates and drops
    install = {"sqlite": m4.SQLITE_INSTALL, "postgresql": m4.POSTGRES_INSTALL}[vendor]
    triggers = [sql for sql in install if not sql.startswith(backfill)]
    uninstall = {"sqlite": m4.SQLITE_UNINSTALL, "postgresql": m4.POSTGRES_UNINSTALL}[vendor]
    without = [
        *uninstall,
        "DROP INDEX IF EXISTS job_status_fingerprint_idx",
        "DROP INDEX IF EXISTS job_dead_groups_idx",
        "DROP INDEX IF EXISTS job_object_idx",
    ]
    if vendor == "sqlite":
        # 0009 swaps the values trigger of 0004 for its lighter one.
        lighter = [m9.SQLITE_TRIGGER if sql == m9.SQLITE_TRIGGER_0004 else sql for sql in triggers]
        assert lighter != triggers, "0004's values trigger not found"
        installed = [m9.SQLITE_TRIGGER if sql == m9.SQLITE_TRIGGER_0004 else sql for sql in install]
        return {
            "without": without,
            "0004: search triggers, both indexes": [*without, *triggers, FINGERPRINT_INDEX_0004, OBJECT_INDEX_0001],
            "0009: lighter trigger, dead-only index": [*without, *lighter, DEAD_GROUPS_INDEX],
            "restore": [*without, *installed, DEAD_GROUPS_INDEX],  # with the backfills
        }
    without = [*m5.POSTGRES_UNINSTALL, *without]
    fts = [sql for sql in triggers if "job_error_fts_idx" in sql]
    gin = [sql for sql in m5.POSTGRES_INSTALL if not sql.startswith(backfill)]
    return {
        "without": without,
        "0004: statement trigger + jobs_jobvalue": [*without, *triggers, FINGERPRINT_INDEX_0004, OBJECT_INDEX_0001],
        "0005: GIN expression index": [*without, *fts, *gin, FINGERPRINT_INDEX_0004, OBJECT_INDEX_0001],
        "0009: dead-only index": [*without, *fts, *gin, DEAD_GROUPS_INDEX],
        "restore": [*without, *fts, *m5.POSTGRES_INSTALL, DEAD_GROUPS_INDEX],
    }


def insert_cost(args: argparse.Namespace) -> None:
    """Time an order's three job rows (as `place_order` writes them: the order id as
    their argument and object id, one transaction) in each state of the search machinery,
    alternating, on a database of --small rows; then put back what the migrations install."""
    url = database_url(args.database_url, args.small)
    setup_django(url, args.redis_url)
    build(url, args.small, args.reuse)
    from django.db import connection, transaction

    from jobs.models import Job

    def apply(statements: list[str]) -> None:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)

    def timed(count: int = 1000) -> float:
        started = time.perf_counter()
        for _ in range(count):
            order = str(uuid.uuid4())
            with transaction.atomic():
                Job.objects.bulk_create(
                    Job(
                        actor_name=actor,
                        queue_name="default",
                        args=[order],
                        key=f"{actor}:{order}",
                        event="order.placed",
                        object_type="orders.order",
                        object_id=order,
                    )
                    for actor in ACTORS
                )
        return (time.perf_counter() - started) / count * 1e6

    states = _search_states(connection.vendor)
    restore = states.pop("restore")
    times: dict[str, list[float]] = {label: [] for label in states}
    for _ in range(args.rounds):
        for label, statements in states.items():
            apply(statements)
            times[label].append(timed())
    apply(restore)
    base = statistics.median(times["without"])
    print(f"\n{connection.vendor}, µs per order's three job rows, medians of {args.rounds} rounds of 1,000\n")
    print("| state | µs | cost |\n|---|---|---|")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {median:,.0f} | {median - base:+,.0f} µs ({(median / base - 1) * 100:+.0f}%) |")


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    if args.insert_cost:
        insert_cost(args)
        return
    if args.explain:
        args.worker, args.reuse = args.rows, True
        worker(args)
        return
    # One process per size, both kept running; every page is requested from each in
    # turn, request by request (the first of the pair alternating): the load of a shared
    # machine drifts, and a drift then weighs on both sizes alike. Each figure is the
    # median of --rounds requests.
    servers: dict[int, subprocess.Popen[str]] = {}
    shown: dict[int, dict[str, int]] = {}
    for count in (args.small, args.rows):
        print(f"{count:,} jobs: building or opening …", file=sys.stderr)
        command = [sys.executable, __file__, "--worker", str(count), "--database-url", args.database_url]
        command += ["--redis-url", args.redis_url] + (["--reuse"] if args.reuse else [])
        server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        servers[count] = server
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise SystemExit(f"the {count:,}-job server stopped")
        shown[count] = json.loads(line)
    timings: dict[int, dict[str, list[list[float]]]] = {count: {} for count in servers}
    print(f"timing {args.rounds} requests per page and size …", file=sys.stderr)
    try:
        for round_ in range(args.rounds):
            for label in shown[args.small]:
                order = (args.small, args.rows) if round_ % 2 == 0 else (args.rows, args.small)
                for count in order:
                    server = servers[count]
                    assert server.stdin is not None and server.stdout is not None
                    server.stdin.write(label + "\n")
                    server.stdin.flush()
                    timings[count].setdefault(label, []).append(json.loads(server.stdout.readline()))
    finally:
        for server in servers.values():
            if server.stdin is not None:
                server.stdin.close()
            server.wait(30)
    small, big = (
        {
            label: [statistics.median(t[0] for t in times), statistics.median(t[1] for t in times), shown[count][label]]
            for label, times in timings[count].items()
        }
        for count in (args.small, args.rows)
    )
    vendor = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\n{vendor}, medians of {args.rounds} requests per page and size, the sizes interleaved (ms)\n")
    print(f"| page | {args.small:,} jobs | {args.rows:,} jobs | ratio | SQL time | rows shown |")
    print("|---|---|---|---|---|---|")
    worst = worst_sql = 0.0
    for label, (small_ms, small_sql, small_rows) in small.items():
        big_ms, big_sql, big_rows = big[label]
        ratio, sql_ratio = big_ms / small_ms, big_sql / max(small_sql, 0.5)
        worst, worst_sql = max(worst, ratio), max(worst_sql, sql_ratio)
        flag = "" if ratio <= 2 else " ✗"
        print(
            f"| {label} | {small_ms:.1f} | {big_ms:.1f} | {ratio:.2f}×{flag} | {small_sql:.1f} → {big_sql:.1f} ms "
            f"| {small_rows} → {big_rows} |"
        )
    print(f"\nworst ratio {worst:.2f}× (bar: 2×); worst SQL ratio {worst_sql:.2f}× (SQL under 0.5 ms counted as 0.5)")
    slowest = max(big, key=lambda label: big[label][0])
    emit(
        "admin_scale",
        figure=f"worst page {worst:.2f}x at {args.rows:,} vs {args.small:,} jobs; slowest {slowest} "
        f"{big[slowest][0]:.0f} ms",
        bar="every page <= 2x",
        passed=worst <= 2,
        database=vendor,
        rows=args.rows,
        worst_ratio=round(worst, 2),
        worst_sql_ratio=round(worst_sql, 2),
    )


if __name__ == "__main__":
    main()
