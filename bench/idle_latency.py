"""How soon does a job sent to an idle worker start, and what do idle workers cost Redis?

    .venv/bin/python bench/idle_latency.py                  # the old default next to the new, 30 samples each
    .venv/bin/python bench/idle_latency.py --quick          # 10 samples each (bench/summary.py)
    .venv/bin/python bench/idle_latency.py --modes dramatiq,poll250,poll100,poll50,default
    .venv/bin/python bench/idle_latency.py --database-url postgres://postgres@127.0.0.1:5432/bench_idle

For each mode (worker settings) in turn, one invocation: a real `manage.py runworkers`
(2 processes x 4 threads, as `make run` starts it) on a redis-server of the benchmark's
own (so that its command counts are the workers' alone) and a database of its own. Then
`--samples` times: wait 1-2 s (the workers go idle), write a job for a no-op probe actor
with `jobs.enqueue` in a transaction, as the app does (the outbox: the Job row, then the
send after COMMIT), and take the time from the COMMIT to the moment the actor starts
(the actor writes `time.time()` to Redis). Then the workers stay idle for
`--idle-seconds` and the Redis commands they issue meanwhile are counted (`INFO
commandstats`, which counts the commands a Lua script runs too: a Dramatiq fetch is an
`evalsha` running a `zadd` (its heartbeat) and an `lpop`). Percentiles are nearest-rank.
The bar (issue 12, goal 5): p50 <= 30 ms with the default settings.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs_throughput import prepare_database, web_environment  # noqa: E402
from bench.result import emit  # noqa: E402

BAR_P50_MS = 30.0
KNOBS = ("BUZZER_WORKER_POLL_MS", "BUZZER_WORKER_WAKEUP", "dramatiq_worker_timeout")
# name: (label, environment of the workers and the sender; {} = the project's defaults)
MODES: dict[str, tuple[str, dict[str, str]]] = {
    "dramatiq": ("poll 1000 ms (Dramatiq's default)", {"BUZZER_WORKER_POLL_MS": "1000", "BUZZER_WORKER_WAKEUP": "0"}),
    "poll250": ("poll 250 ms (the old default)", {"BUZZER_WORKER_POLL_MS": "250", "BUZZER_WORKER_WAKEUP": "0"}),
    "poll100": ("poll 100 ms", {"BUZZER_WORKER_POLL_MS": "100", "BUZZER_WORKER_WAKEUP": "0"}),
    "poll50": ("poll 50 ms", {"BUZZER_WORKER_POLL_MS": "50", "BUZZER_WORKER_WAKEUP": "0"}),
    "default": ("the default settings", {}),
}


@dataclass
class Result:
    mode: str
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    idle_ops: float = 0.0  # Redis commands per second, all worker processes
    by_command: dict[str, float] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 samples per mode, 4 s of idle counting")
    parser.add_argument("--modes", default="poll250,default", help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--samples", type=int, default=None, help="jobs per mode (default 30, quick 10)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle counting window (default 10, quick 4)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database-url", default=f"sqlite:///{ROOT / 'var' / 'bench-idle.sqlite3'}")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="a Redis of your own instead of a private redis-server (the idle figures then count every client)",
    )
    args = parser.parse_args(argv)
    args.samples = args.samples or (10 if args.quick else 30)
    args.idle_seconds = args.idle_seconds or (4.0 if args.quick else 10.0)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    return args


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def setup(database_url: str, redis_url: str, namespace: str) -> dict[str, str]:
    env = web_environment(database_url, redis_url, BUZZER_NAMESPACE=namespace, PYTHONPATH=str(ROOT))
    env |= {"DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONUNBUFFERED": "1"}
    for knob in KNOBS:
        env.pop(knob, None)  # the modes say what they change; the rest is the project's default
        os.environ.pop(knob, None)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def start_workers(env: dict[str, str], args: argparse.Namespace, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "manage.py", "runworkers", "--processes", str(args.processes)]
    command += ["--threads", str(args.threads)]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_workers(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def wait_ready(client: Any, namespace: str, processes: int, since_ms: float, proc: subprocess.Popen[bytes]) -> None:
    """Every worker process beats (the tracked workers' set names each process)."""
    from jobs.claims import workers_key

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the workers exited with {proc.returncode}")
        if len(client.zrangebyscore(workers_key(namespace), since_ms, "+inf")) >= processes:
            return
        time.sleep(0.1)
    sys.exit("the workers did not start within 90 s")


def one_sample(client: Any) -> float:
    """Send one probe job as the app does; milliseconds from its COMMIT to the actor's start."""
    from django.db import transaction

    import jobs
    from bench.tasks import idle_probe, starts_key

    token = uuid.uuid4().hex
    committed: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.time()))  # runs first: right after COMMIT
        jobs.enqueue(idle_probe, token)
    popped = client.blpop([starts_key()], timeout=30)
    if popped is None:
        sys.exit("the probe job did not start within 30 s")
    got, started = popped[1].decode().split()
    if got != token:
        sys.exit(f"a probe started that was not sent last: {got}")
    return (float(started) - committed[0]) * 1000


def command_calls(client: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


def idle_cost(client: Any, seconds: float) -> tuple[float, dict[str, float]]:
    """Redis commands per second while nobody sends anything (INFO itself excepted)."""
    before = command_calls(client)
    time.sleep(seconds)
    after = command_calls(client)
    delta = {name: (calls - before.get(name, 0)) / seconds for name, calls in after.items()}
    delta["info"] = delta.get("info", 0) - 1 / seconds
    by_command = {name: rate for name, rate in sorted(delta.items(), key=lambda kv: -kv[1]) if rate > 0}
    return sum(by_command.values()), by_command


def run_mode(
    mode: str, env: dict[str, str], args: argparse.Namespace, client: Any, log: Path, default_wakeup: bool
) -> Result:
    from django.conf import settings

    label, changes = MODES[mode]
    mode_env = env | changes
    # The sender reads the wake-up setting too (it adds the nudges to its sends).
    settings.BUZZER_WORKER_WAKEUP = changes["BUZZER_WORKER_WAKEUP"] == "1" if changes else default_wakeup
    result = Result(mode, label)
    since_ms = time.time() * 1000
    proc = start_workers(mode_env, args, log)
    try:
        wait_ready(client, env["BUZZER_NAMESPACE"], args.processes, since_ms, proc)
        for _ in range(2 * args.processes):  # each process's first job opens its connections
            time.sleep(0.3)
            one_sample(client)
        for n in range(args.samples):
            time.sleep(random.uniform(1.0, 2.0))
            result.latencies_ms.append(one_sample(client))
            print(f"{mode:8s} sample {n + 1:3d}: {result.latencies_ms[-1]:7.1f} ms", file=sys.stderr, flush=True)
        time.sleep(2)  # the last job's bookkeeping is done, the back-off has grown to the poll
        result.idle_ops, result.by_command = idle_cost(client, args.idle_seconds)
    finally:
        stop_workers(proc)
    return result


def describe_defaults() -> str:
    from django.conf import settings

    return f"poll {settings.BUZZER_WORKER_POLL_MS} ms, wake-up {'on' if settings.BUZZER_WORKER_WAKEUP else 'off'}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    modes = args.modes.split(",")
    namespace = f"bench-idle-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        server = None
        redis_url = args.redis_url
        if not redis_url:
            from tests.support.redis_server import RedisServer

            server = RedisServer(Path(tmp) / "redis").start()
            redis_url = server.url()
        try:
            prepare_database(args.database_url)
            env = setup(args.database_url, redis_url, namespace)
            defaults = describe_defaults()
            import redis
            from django.conf import settings

            client = redis.Redis.from_url(redis_url)
            log = Path(tmp) / "workers.log"
            wakeup = settings.BUZZER_WORKER_WAKEUP
            results = [run_mode(mode, env, args, client, log, wakeup) for mode in modes]
        finally:
            if server is not None:
                server.stop()
    report(results, args, defaults)


def report(results: list[Result], args: argparse.Namespace, defaults: str) -> None:
    from django.db import connection

    print(
        f"\n{connection.vendor}, runworkers {args.processes} x {args.threads}, {args.samples} jobs per mode, "
        f"each after 1-2 s idle; enqueue COMMIT -> actor start (ms); idle Redis commands/s over "
        f"{args.idle_seconds:.0f} s (the default settings: {defaults})\n"
    )
    print(f"| mode | p50 | p95 | p99 | max | idle ops/s | per process | by command |\n|{'---|' * 8}")
    for r in results:
        top = ", ".join(f"{name} {rate:.1f}" for name, rate in r.by_command.items() if rate >= 0.5)
        lat = r.latencies_ms
        print(
            f"| {r.label} | {statistics.median(lat):.1f} | {percentile(lat, 95):.1f} | {percentile(lat, 99):.1f} "
            f"| {max(lat):.1f} | {r.idle_ops:.1f} | {r.idle_ops / args.processes:.1f} | {top} |"
        )
    new = next((r for r in results if r.mode == "default"), results[-1])
    old = next((r for r in results if r.mode == "poll250"), None)
    p50 = statistics.median(new.latencies_ms)
    figures: dict[str, Any] = {
        "mode": new.mode,
        "p50_ms": round(p50, 1),
        "p95_ms": round(percentile(new.latencies_ms, 95), 1),
        "p99_ms": round(percentile(new.latencies_ms, 99), 1),
        "idle_ops_per_process": round(new.idle_ops / args.processes, 1),
    }
    figure = f"p50 {p50:.1f} ms, p95 {figures['p95_ms']:.1f} ms"
    figure += f"; idle {figures['idle_ops_per_process']:.0f} Redis ops/s per process"
    if old is not None and old is not new:
        figures["old_p50_ms"] = round(statistics.median(old.latencies_ms), 1)
        figures["old_idle_ops_per_process"] = round(old.idle_ops / args.processes, 1)
        figure += f" (poll 250 ms alone: p50 {figures['old_p50_ms']:.1f} ms, {figures['old_idle_ops_per_process']:.0f})"
    emit("idle_latency", figure=figure, bar=f"p50 <= {BAR_P50_MS:.0f} ms", passed=p50 <= BAR_P50_MS, **figures)


if __name__ == "__main__":
    main()
