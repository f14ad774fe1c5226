"""How many orders a second does `POST /api/orders/` accept, next to a read on the same server?

    .venv/bin/python bench/order_throughput.py                     # SQLite (var/bench-order-throughput.sqlite3)
    .venv/bin/python bench/order_throughput.py --database-url postgres://postgres@127.0.0.1:5432/buzzer_bench_orders

One command: a database and a Redis database of the benchmark's own (never the data of
`make run`), migrated and seeded with products whose stock never runs out; gunicorn
in front, as in production (`deploy/gunicorn.conf.py`: 2 x CPUs + 1 gthread workers of
4 threads, DEBUG off; `--gunicorn sync` runs `--web-workers` sync workers instead, as the
figures before 2026-12-01 did), `rundramatiq` workers behind. For each concurrency
(`--connections`, default 1 and 8) wrk (Debian's package, installed when missing the way
`make test` installs its tools) runs
`GET /api/orders/<id>/` and then `POST /api/orders/` (a Lua script: a new order with an
e-mail address of its own per request, one item, the test card) for `--duration`
seconds each, `--rounds` times, first with the job workers idle (`idle`: they start
after the requests, the jobs wait in Redis), then with them running the jobs on the same
cores meanwhile (`busy`). It prints both throughputs, their ratio (the median of each
POST run over the GET run just before it), p50/p99, and the CPU time each request cost:
the gunicorn processes plus, on PostgreSQL, the backends serving the benchmark's
database (`CPU ms GET`, `CPU ms POST`), and with the workers' CPU for the order's three
jobs added. `CPU ratio` is the throughput ratio CPU alone would allow: on a shared
2-core machine the most stable of these figures. Every response must be a 2xx and at the
end every order must have its three jobs, all `succeeded`. The bar (issue 12, goal 1):
POST at >= 0.4x GET at 8 connections, held with the workers idle (what the web server
accepts); the busy figure is printed next to it. `--quick` (bench/summary.py): 8
connections, three rounds of 4 s each (an odd count: the median is one pair's ratio).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs_throughput import bench_redis_url, prepare_database, web_environment  # noqa: E402
from bench.result import emit  # noqa: E402

WRK = "/usr/bin/wrk"
SKU = "STK-001"

POST_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local counter = 0
local thread_id = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"email": "b%%d-%%d@example.com", "items": [{"sku": "%(sku)s", "quantity": 1}], "card": "4242424242424242"}',
    thread_id, counter)
  return wrk.format(nil, "/api/orders/", nil, body)
end
"""


@dataclass
class Run:
    label: str
    connections: int
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU time per request, by process group
    mode: str = ""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 connections, 3 rounds of 4 s")
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT / 'var' / 'bench-order-throughput.sqlite3'}")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL's server, database 9")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating GET/POST rounds; medians reported")
    parser.add_argument("--connections", default="1,8", help="comma-separated wrk connection counts")
    parser.add_argument(
        "--gunicorn",
        choices=("production", "sync"),
        default="production",
        help="production: deploy/gunicorn.conf.py as it is (gthread, 2 x CPUs + 1 workers of 4 threads, access "
        "log on); sync: --web-workers sync workers, the figures before 2026-12-01",
    )
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn sync workers (--gunicorn sync)")
    parser.add_argument(
        "--workers",
        default="idle,busy",
        help="idle: the job workers start after the requests (the queue waits in Redis); busy: they run their "
        "jobs on the same cores meanwhile; both by default",
    )
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--worker-threads", type=int, default=4)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.connections = 4, 3, "8"
    return args


def ensure_wrk() -> None:
    if os.access(WRK, os.X_OK):
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from ensure_test_tools import ensure

    ensure("wrk", WRK, "bench/order_throughput.py")
    if not os.access(WRK, os.X_OK):
        sys.exit("wrk is needed: sudo apt-get install wrk")


def environment(args: argparse.Namespace) -> dict[str, str]:
    return web_environment(
        args.database_url,
        bench_redis_url(args, database=9),
        # The per-key limit is checked (its cost is part of every request) but never binds.
        BUZZER_RATELIMIT_API_ORDERS="100000000/m",
        PYTHONPATH=str(ROOT),
    )


def setup(env: dict[str, str]) -> tuple[str, str]:
    """Migrate, seed, clear this installation's Redis keys; return (API key, an order id)."""
    os.environ.update(env)
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from orders.models import ApiKey, Product
    from orders.services import place_order

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0)
    Product.objects.update(stock=10**9)  # the jobs take stock off: it must never run out
    client = redis.Redis.from_url(env["REDIS_URL"])
    for key in client.scan_iter(f"{settings.BUZZER_NAMESPACE}:*", count=1000):
        client.delete(key)
    api_key, raw = ApiKey.issue("bench")
    order = place_order(email="read@example.com", items=[{"sku": SKU}], card="4242424242424242", api_key=api_key)
    return raw, str(order.id)


def start_web(env: dict[str, str], args: argparse.Namespace) -> subprocess.Popen:
    bind = f"127.0.0.1:{args.port}"
    if args.gunicorn == "production":
        # The production configuration as it is, but for its address and the recycling of
        # workers (every ~2,000 requests: a few seconds here, and each recycle closes
        # wrk's keep-alive connections, which it counts as errors); its access log (a line
        # per request, to journald in production) goes to /dev/null.
        extra = {"GUNICORN_BIND": bind, "GUNICORN_LOG_LEVEL": "warning", "GUNICORN_MAX_REQUESTS": "0"}
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "config.wsgi"],
            cwd=ROOT, env={**env, **extra},
            stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-w", str(args.web_workers), "-b", bind,
         "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip


def web_description(args: argparse.Namespace) -> str:
    if args.gunicorn == "production":
        import importlib.util

        spec = importlib.util.spec_from_file_location("buzzer_gunicorn_conf", ROOT / "deploy" / "gunicorn.conf.py")
        assert spec is not None and spec.loader is not None
        conf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(conf)
        return f"gunicorn as in production ({conf.workers} {conf.worker_class} workers x {conf.threads} threads)"
    return f"gunicorn {args.web_workers} sync workers"


def start_workers(env: dict[str, str], args: argparse.Namespace) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "rundramatiq", "--processes", str(args.worker_processes),
         "--threads", str(args.worker_threads)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until_up(port: int, key: str, order_id: str) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/orders/{order_id}/", headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("gunicorn did not answer within 60 s")
        time.sleep(0.2)


def wrk(connections: int, duration: int, label: str, extra: list[str]) -> Run:
    threads = min(connections, 2)
    # wrk's own timeout is 2 s: a slower answer would count as a socket error and stop the
    # run, hiding how slow the tail is. 10 s, then the p99 shows it.
    command = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s", "--latency"]
    command += extra
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    out = done.stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        sys.exit(f"{label}: not every request succeeded:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Run(label, connections, rate, latency(out, "50%"), latency(out, "99%"), requests)


def cpu_seconds(groups: dict[str, int], database: str) -> dict[str, float]:
    """CPU time (user + system) used so far by every process of each process group, and
    by the PostgreSQL backends serving `database` (none on SQLite)."""
    import psutil

    totals = dict.fromkeys([*groups, "postgres"], 0.0)
    by_pgid = {pgid: name for name, pgid in groups.items()}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = by_pgid.get(os.getpgid(proc.pid))
            if name is None and database and proc.info["name"] == "postgres":
                if f" {database} " in " ".join(proc.info["cmdline"] or []):
                    name = "postgres"
            if name is not None:
                times = proc.cpu_times()
                totals[name] += times.user + times.system
        except (psutil.Error, ProcessLookupError):
            continue
    return totals


def latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wait_for_jobs(timeout: float = 300) -> tuple[int, dict[str, int]]:
    from django.db.models import Count

    from jobs.models import Job
    from orders.models import Order

    deadline = time.monotonic() + timeout
    while True:
        orders = Order.objects.count()
        states = dict(Job.objects.filter(object_type="orders.order").values_list("status").annotate(n=Count("id")))
        if states == {"succeeded": 3 * orders} or time.monotonic() > deadline:
            return orders, states
        time.sleep(0.5)


def median_run(runs: list[Run], mode: str, label: str, connections: int) -> Run:
    mine = [r for r in runs if r.mode == mode and r.label == label and r.connections == connections]
    cpu = {name: statistics.median(r.cpu_ms[name] for r in mine) for name in mine[0].cpu_ms}
    return Run(
        label,
        connections,
        statistics.median(r.rate for r in mine),
        statistics.median(r.p50_ms for r in mine),
        statistics.median(r.p99_ms for r in mine),
        sum(r.requests for r in mine),
        cpu,
        mode,
    )


def pairs(runs: list[Run], mode: str, connections: int) -> list[tuple[Run, Run]]:
    mine = [r for r in runs if r.mode == mode and r.connections == connections]
    return [(g, p) for g, p in itertools.pairwise(mine) if g.label == "GET" and p.label == "POST"]


def measure(
    runs: list[Run], mode: str, args: argparse.Namespace, groups: dict[str, int], database: str, get: list[str],
    post: list[str],
) -> None:  # fmt: skip
    for round_no in range(1, args.rounds + 1):
        for connections in (int(c) for c in args.connections.split(",")):
            for label, extra in (("GET", get), ("POST", post)):
                before = cpu_seconds(groups, database)
                run = wrk(connections, args.duration, label, extra)
                after = cpu_seconds(groups, database)
                run.mode = mode
                run.cpu_ms = {k: (after[k] - before[k]) * 1000 / run.requests for k in after}
                runs.append(run)
                cpu = "  ".join(f"{k} {v:.1f}" for k, v in run.cpu_ms.items())
                print(
                    f"workers {mode}, round {round_no}: {label:4s} c={connections:<2d} {run.rate:8.1f} req/s  "
                    f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  CPU ms/request: {cpu}",
                    flush=True,
                )


def main() -> None:
    args = parse_args()
    modes = args.workers.split(",")
    ensure_wrk()
    prepare_database(args.database_url)
    env = environment(args)
    key, order_id = setup(env)
    from django.db import connection

    vendor = connection.vendor
    database = connection.settings_dict["NAME"] if vendor == "postgresql" else ""
    connection.close()
    web = start_web(env, args)
    workers: subprocess.Popen | None = None
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(POST_SCRIPT % {"key": key, "sku": SKU})
        base = f"http://127.0.0.1:{args.port}"
        get = ["-H", f"Authorization: Bearer {key}", f"{base}/api/orders/{order_id}/"]
        post = ["-s", str(script), f"{base}/api/orders/"]
        try:
            wait_until_up(args.port, key, order_id)
            wrk(2, 2, "warm-up GET", get)
            wrk(2, 2, "warm-up POST", post)
            for mode in modes:
                if mode == "busy" and workers is None:
                    workers = start_workers(env, args)
                    wait_for_jobs()  # the idle runs' backlog first
                groups = {"web": web.pid, "workers": workers.pid if workers else -1}
                measure(runs, mode, args, groups, database, get, post)
            if workers is None:
                workers = start_workers(env, args)
            orders, states = wait_for_jobs()
        finally:
            stop([web] + ([workers] if workers else []))
    print(
        f"\n{vendor}, {web_description(args)}, rundramatiq {args.worker_processes} x "
        f"{args.worker_threads}, wrk {args.duration} s per run, medians of {args.rounds} rounds:"
    )
    print(
        f"{'workers':>7s} {'conns':>5s} {'GET/s':>7s} {'POST/s':>7s} {'ratio':>6s}  {'GET p50/p99 ms':>15s}  "
        f"{'POST p50/p99 ms':>16s}  {'CPU ms GET':>10s}  {'CPU ms POST (web+pg, +workers)':>30s}  {'CPU ratio':>9s}"
    )
    for mode in modes:
        for connections in sorted({r.connections for r in runs}):
            g, p = median_run(runs, mode, "GET", connections), median_run(runs, mode, "POST", connections)
            # Each POST run next to the GET run just before it: the ratio of a pair drifts
            # less with the machine's load than the ratio of medians.
            ratio = statistics.median(post.rate / get.rate for get, post in pairs(runs, mode, connections))
            get_cpu = g.cpu_ms["web"] + g.cpu_ms["postgres"]
            post_cpu = p.cpu_ms["web"] + p.cpu_ms["postgres"]
            # What the rates would be if CPU were the only limit (as it is on a busy machine):
            # the request's own CPU (web + PostgreSQL), then also its jobs' (workers).
            cpu_ratio = get_cpu / (post_cpu + p.cpu_ms["workers"])
            print(
                f"{mode:>7s} {connections:5d} {g.rate:7.1f} {p.rate:7.1f} {ratio:6.2f}  "
                f"{g.p50_ms:6.1f} / {g.p99_ms:6.1f}  {p.p50_ms:7.1f} / {p.p99_ms:6.1f}  {get_cpu:10.1f}  "
                f"{post_cpu:17.1f}, {post_cpu + p.cpu_ms['workers']:10.1f}  {cpu_ratio:9.2f}"
            )
    ok = states == {"succeeded": 3 * orders}
    print(f"orders: {orders}, their jobs: {states} {'(all succeeded)' if ok else '(NOT all succeeded)'}")
    conns = 8 if any(r.connections == 8 for r in runs) else max(r.connections for r in runs)
    figures: dict[str, float] = {}
    for mode in modes:
        g, p = median_run(runs, mode, "GET", conns), median_run(runs, mode, "POST", conns)
        figures[f"{mode}_get_per_s"], figures[f"{mode}_post_per_s"] = round(g.rate, 1), round(p.rate, 1)
        figures[f"{mode}_ratio"] = round(statistics.median(b.rate / a.rate for a, b in pairs(runs, mode, conns)), 3)
        figures[f"{mode}_post_p99_ms"] = round(p.p99_ms, 1)
    held = modes[0]
    figure = "; ".join(
        f"workers {mode}: POST {figures[f'{mode}_post_per_s']:.0f}/s = {figures[f'{mode}_ratio']:.2f}x GET "
        f"{figures[f'{mode}_get_per_s']:.0f}/s"
        for mode in modes
    )
    emit(
        "order_throughput",
        figure=f"{figure} (c={conns})",
        bar=f"POST >= 0.4x GET at 8 connections, workers {held}; every job succeeded",
        passed=figures[f"{held}_ratio"] >= 0.4 and ok,
        database=vendor,
        connections=conns,
        **figures,
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
