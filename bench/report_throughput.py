"""How fast is a report, against the plainest CSV export Django allows, and does its
memory stay flat?

    .venv/bin/python bench/report_throughput.py                 # 1,000,000 order items
    .venv/bin/python bench/report_throughput.py --items 200000  # a quicker look

On a SQLite database of its own (var/bench-reports.sqlite3, rebuilt unless --reuse) it
writes the order items (raw SQL, in seconds), then in the same run and on the same
rows, alternating:

- baseline: a plain loop of `csv.writer` over `values_list(...).iterator()` of the
  orders report's query (no progress, no cancellation, no storage);
- report: `reports.services.generate_report` for that orders report (count, chunked
  stream, throttled progress and cancellation checks, storage, bookkeeping).

Targets (issue 4): the report at >= 70% of the baseline's rows per second, and its peak
memory (ru_maxrss, each measured in a fresh process) at 1,000,000 rows no more than
1.25x the peak at 100,000. An untimed pass over the rows comes first (the first pass
reads them from disk). `--quick` (bench/summary.py): 100,000 items, so the memory ratio
compares 100,000 rows with 10,000.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.result import emit  # noqa: E402

DAYS = 100
FIRST_DAY = datetime(2026, 1, 1)
ITEMS_PER_ORDER = 2
PRODUCTS = [("BUZ-001", "Restaurant buzzer", "24.90"), ("MUG-001", "Buzzer mug", "12.50"), ("CAP-001", "Cap", "15.00")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 items (unless given)")
    parser.add_argument("--items", type=int, default=None, help="order items in the big run (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating baseline/report rounds (default 2)")
    parser.add_argument("--database", default=str(ROOT / "var" / "bench-reports.sqlite3"))
    parser.add_argument("--reuse", action="store_true", help="keep the database of an earlier run with as many items")
    parser.add_argument("--memory-run", nargs=2, metavar=("END_DAY", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.items = args.items or (100_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or 2
    return args


def setup_django(database: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "BUZZER_TESTING": "0",
            "BUZZER_BROKER": "stub",  # generation needs no broker: the bench calls the service
            "BUZZER_ENV_FILE": "/nonexistent/.env",
            "DEBUG": "0",
            "SECRET_KEY": "benchmark-only-secret-key-" + "x" * 30,
            "ALLOWED_HOSTS": "localhost",
            "DATABASE_URL": f"sqlite:///{database}",
            "MEDIA_ROOT": str(Path(database).parent / "bench-reports-media"),
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()


def build(database: str, items: int, reuse: bool) -> None:
    path = Path(database)
    marker = Path(f"{database}.items")
    if reuse and path.exists() and marker.exists() and marker.read_text() == str(items):
        setup_django(database)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", ".items"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    setup_django(database)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    started = time.monotonic()
    insert_order_items(items)
    marker.write_text(str(items))
    print(f"built {items // ITEMS_PER_ORDER * ITEMS_PER_ORDER:,} order items in {time.monotonic() - started:.1f} s")


def insert_order_items(items: int, stock: int = 100) -> None:
    """The three products and `items` order items (two per order, spread evenly over DAYS
    days from FIRST_DAY), by raw SQL in one transaction: seconds for a million."""
    from django.db import connection, transaction

    orders = items // ITEMS_PER_ORDER
    step = timedelta(days=DAYS) / orders  # evenly spread: a tenth of the days holds a tenth of the rows
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO orders_product (sku, name, price, stock, active) VALUES (%s, %s, %s, %s, %s)",
            [(*product, stock, True) for product in PRODUCTS],
        )
        cursor.execute("SELECT id, sku, name, price FROM orders_product ORDER BY id")
        products = cursor.fetchall()
        for start in range(0, orders, 50_000):
            order_rows, item_rows = [], []
            for i in range(start, min(start + 50_000, orders)):
                order_id = uuid.uuid4().hex
                created = FIRST_DAY + step * i
                order_rows.append((order_id, f"c{i % 5000}@example.com", str(created), "40.40"))
                for n in range(ITEMS_PER_ORDER):
                    pid, sku, name, price = products[(i + n) % len(products)]
                    item_rows.append((order_id, pid, sku, name, 1 + n, str(price)))
            cursor.executemany(
                "INSERT INTO orders_order (id, email, status, total, priority, card_last4, payment_reference,"
                " created_at) VALUES (%s, %s, 'paid', %s, 'standard', '4242', '', %s)",
                [(o, e, t, c) for o, e, c, t in order_rows],
            )
            cursor.executemany(
                "INSERT INTO orders_orderitem (order_id, product_id, sku, name, quantity, unit_price)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                item_rows,
            )


def parameters(days: int) -> dict[str, str]:
    return {"start": FIRST_DAY.date().isoformat(), "end": (FIRST_DAY + timedelta(days=days - 1)).date().isoformat()}


def run_baseline(days: int) -> tuple[int, float]:
    from reports import kinds

    kind = kinds.get("orders")
    queryset = kind.query(parameters(days))
    started = time.monotonic()
    rows = 0
    with tempfile.NamedTemporaryFile("w", newline="", encoding="utf-8", suffix=".csv") as out:
        writer = csv.writer(out)
        writer.writerow(kind.columns)
        for row in queryset.iterator(chunk_size=2000):
            writer.writerow(row)
            rows += 1
    return rows, time.monotonic() - started


def run_report(days: int) -> tuple[int, float]:
    from django.contrib.auth import get_user_model

    from reports import services
    from reports.models import Report

    owner, _ = get_user_model().objects.get_or_create(username="bench")
    params = parameters(days)
    report = Report.objects.create(
        owner=owner, kind="orders", parameters=params, fingerprint=services.fingerprint("orders", params)
    )
    started = time.monotonic()
    services.generate_report(str(report.id))
    elapsed = time.monotonic() - started
    report.refresh_from_db()
    assert report.status == "succeeded", report.error
    report.file.delete(save=False)
    return report.row_count, elapsed


def memory_run(database: str, days: int, mode: str) -> None:
    """In a fresh process: one run, then its peak resident memory."""
    setup_django(database)
    # Both measures: the process's peak resident set (everything, SQLite's cache too),
    # and the peak of Python allocations during the run alone (tracemalloc).
    tracemalloc.start()
    rows, _ = run_report(days) if mode == "report" else run_baseline(days)
    _, traced_peak = tracemalloc.get_traced_memory()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"rows": rows, "peak_kb": peak_kb, "traced_kb": traced_peak // 1024}))


def measure_memory(database: str, days: int, mode: str) -> dict[str, int]:
    output = subprocess.run(
        [sys.executable, __file__, "--database", database, "--memory-run", str(days), mode],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.memory_run:
        memory_run(args.database, int(args.memory_run[0]), args.memory_run[1])
        return
    build(args.database, args.items, args.reuse)
    # Untimed, once: the first pass over the rows reads them from disk (several times
    # slower here), and would count against whichever mode ran first.
    run_baseline(DAYS)
    baseline, report = [], []
    for round_number in range(args.rounds):
        for name, run, results in (("baseline", run_baseline, baseline), ("report", run_report, report)):
            rows, elapsed = run(DAYS)
            results.append(rows / elapsed)
            print(f"round {round_number + 1} {name:8}: {rows:,} rows in {elapsed:.2f} s = {rows / elapsed:,.0f} rows/s")
    base, ours = statistics.median(baseline), statistics.median(report)
    print(f"\nthroughput (median of {args.rounds}): baseline {base:,.0f} rows/s, report {ours:,.0f} rows/s")
    print(f"report / baseline = {ours / base:.0%} (target >= 70%)")

    small_days = DAYS // 10
    memory_ratio = 0.0
    for mode in ("baseline", "report"):
        small = measure_memory(args.database, small_days, mode)
        big = measure_memory(args.database, DAYS, mode)
        memory_ratio = big["peak_kb"] / small["peak_kb"]  # the report's, the last mode
        target = " (target <= 1.25x)" if mode == "report" else ""
        for measure, label in (("peak_kb", "max RSS"), ("traced_kb", "Python peak")):
            print(
                f"{label:11} {mode:8}: {small['rows']:,} rows {small[measure] / 1024:.1f} MiB, "
                f"{big['rows']:,} rows {big[measure] / 1024:.1f} MiB, "
                f"ratio {big[measure] / small[measure]:.2f}x{target}"
            )
    emit(
        "report_throughput",
        figure=f"report {ours / base:.0%} of baseline ({ours:,.0f} rows/s); max RSS {memory_ratio:.2f}x "
        f"at 10x the rows ({args.items:,} items)",
        bar="report >= 70% of baseline, memory <= 1.25x",
        passed=ours / base >= 0.7 and memory_ratio <= 1.25,
        items=args.items,
        baseline_rows_per_s=round(base),
        report_rows_per_s=round(ours),
        ratio=round(ours / base, 3),
        memory_ratio=round(memory_ratio, 2),
    )


if __name__ == "__main__":
    main()
