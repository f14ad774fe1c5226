"""Every benchmark in its quick mode, one after another, and one table of the results.

    .venv/bin/python bench/summary.py                  # `make bench`
    .venv/bin/python bench/summary.py --database-url postgres://postgres@127.0.0.1:5432/bench_summary
    .venv/bin/python bench/summary.py --only idle_latency,order_latency

Each benchmark runs as its own process with `--quick` and ends its output with one JSON
line (bench/result.py): its headline figure, its bar and whether it holds. They all use a
redis-server this run starts on a private port (each its own database on it; the idle
latency and capacity benchmarks start one more each, to count their own commands alone) and SQLite
databases of their own under var/; with `--database-url` the ones that use a SQL
database run again on PostgreSQL, each on a database named after that URL's with its
own suffix (created and dropped by the benchmark). A script that does not exist yet is
skipped with a note. Each one's whole output is kept under var/bench-summary/. The table
is Markdown, ready for docs/BENCHMARKS.md. Exit code 1 when a benchmark crashed (a bar
not reached is a result, not a crash).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOG_DIR = ROOT / "var" / "bench-summary"
TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Bench:
    name: str  # the row's label
    argv: tuple[str, ...]  # script and arguments, `--quick` included
    # None: whatever its --help offers (a benchmark written elsewhere)
    sql: bool | None = True  # takes --database-url: runs again on PostgreSQL
    redis: bool | None = True  # takes --redis-url (a database of the run's redis-server)
    suffix: str = ""  # of its PostgreSQL database's name


BENCHMARKS = (
    Bench("idle_latency", ("bench/idle_latency.py", "--quick"), redis=False, suffix="idle"),
    Bench("jobs_throughput", ("bench/jobs_throughput.py", "--quick"), suffix="jobs"),
    Bench("jobs_throughput --prefetch 64", ("bench/jobs_throughput.py", "--quick", "--prefetch", "64"), suffix="jobs"),
    Bench("order_throughput", ("bench/order_throughput.py", "--quick"), suffix="orders"),
    Bench("order_latency", ("bench/order_latency.py", "--quick"), suffix="latency"),
    Bench("premium_latency", ("bench/premium_latency.py", "--quick"), sql=None, redis=None, suffix="premium"),
    Bench("long_work_isolation", ("bench/long_work_isolation.py", "--quick"), sql=None, redis=None, suffix="isolation"),
    Bench("report_throughput", ("bench/report_throughput.py", "--quick"), sql=False, redis=False),
    Bench("admin_scale", ("bench/admin_scale.py", "--quick"), suffix="admin"),
    # A Redis server of its own: it reads that server's counters.
    Bench("capacity", ("bench/capacity.py", "--quick"), redis=False, suffix="capacity"),
)


@dataclass
class Row:
    benchmark: str
    figure: str
    bar: str
    result: str


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The benchmark's result: its last output line that is a JSON object naming a bench."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and "bench" in found:
            return found
    return None


def headline(result: dict[str, Any]) -> str:
    """The `figure` it gave, else its other figures as `key value`."""
    if result.get("figure"):
        return str(result["figure"])
    skip = {"bench", "bar", "pass", "figure"}
    return ", ".join(f"{key} {value}" for key, value in result.items() if key not in skip)


def verdict(passed: Any) -> str:
    return {True: "pass", False: "**FAIL**"}.get(passed, "-")


def row_for(label: str, result: dict[str, Any] | None, *, note: str = "") -> Row:
    if result is None:
        return Row(label, note or "no result line", "", "error")
    return Row(label, headline(result), str(result.get("bar", "")), verdict(result.get("pass")))


def format_table(rows: list[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| benchmark | figure | bar | result |", "|---|---|---|---|"]
    lines += [f"| {cell(r.benchmark)} | {cell(r.figure)} | {cell(r.bar)} | {r.result} |" for r in rows]
    return "\n".join(lines)


def postgres_url(base: str, bench: Bench) -> str:
    """A database of the benchmark's own on the server of `base`. admin_scale appends its
    row count and only drops databases named bench_*."""
    parts = urlsplit(base)
    name = parts.path.strip("/") or "bench"
    name = f"{name}_{bench.suffix}" if bench.suffix else name
    if bench.name == "admin_scale" and not name.startswith("bench_"):
        name = f"bench_{name}"
    return urlunsplit(parts._replace(path=f"/{name}"))


def plan(args: argparse.Namespace) -> list[tuple[str, Bench, str | None]]:
    """(label, benchmark, database URL or None for its own SQLite default), in run order."""
    only = set(args.only.split(",")) if args.only else None
    chosen = [b for b in BENCHMARKS if only is None or b.name in only or b.name.split()[0] in only]
    runs: list[tuple[str, Bench, str | None]] = [(b.name, b, None) for b in chosen]
    if args.database_url:
        runs += [
            (f"{b.name} (PostgreSQL)", b, postgres_url(args.database_url, b))
            for b in chosen
            if takes(b, "sql", "--database-url")
        ]
    return runs


def takes(bench: Bench, flag: str, option: str) -> bool:
    said = getattr(bench, flag)
    if said is not None:
        return said
    script = ROOT / bench.argv[0]
    if not script.exists():
        return flag == "sql"  # listed, and skipped with its note
    shown = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True)
    return option in shown.stdout


def run_one(label: str, bench: Bench, database_url: str | None, redis_url: str) -> Row:
    script = ROOT / bench.argv[0]
    if not script.exists():
        return Row(label, f"skipped: {bench.argv[0]} does not exist yet", "", "skipped")
    command = [sys.executable, *bench.argv]
    if database_url:
        command += ["--database-url", database_url]
    if takes(bench, "redis", "--redis-url"):
        command += ["--redis-url", redis_url]
    log = LOG_DIR / f"{label.replace(' ', '_').replace('/', '_')}.log"
    print(f"== {label}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        stdout, stderr, code = _text(expired.stdout), _text(expired.stderr), None
    log.write_text(f"$ {' '.join(command)}\n\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    elapsed = time.monotonic() - started
    result = parse_result(stdout)  # a benchmark may exit 1 after its result line (a bar missed)
    why = "timed out" if code is None else f"exit code {code}"
    last = (stderr.strip().splitlines() or [""])[-1][:200]
    row = row_for(label, result, note=f"{why}: {last} (see {log.relative_to(ROOT)})")
    print(f"   {row.result} in {elapsed:.0f} s: {row.figure}", flush=True)
    return row


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="a PostgreSQL URL: the SQL ones run on it too")
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(b.name for b in BENCHMARKS)}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tests.support.redis_server import RedisServer

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-summary-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            for n, (label, bench, database_url) in enumerate(plan(args)):
                rows.append(run_one(label, bench, database_url, server.url(n % 16)))
        finally:
            server.stop()
    minutes = (time.monotonic() - started) / 60
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)"
    print(f"\n{when}, commit {commit.stdout.strip() or '?'}, {minutes:.1f} min, {load}, SQLite unless marked:\n")
    print(format_table(rows))
    return 1 if any(r.result == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
