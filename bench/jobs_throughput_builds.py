"""Tracked drains of several builds of Buzzer, interleaved round by round with bare Dramatiq.

`bench/jobs_throughput.py` compares bare and tracked workers of one build. Two builds
run one after the other differ by the machine's drift as much as by their code here
(the same build's ratio swings by 10-20 points between runs). This one runs, in each
round, a bare drain and a tracked drain of every build, in an order that rotates from
round to round, so every build meets the same moments of the machine:

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/jobs_throughput_builds.py --rounds 5 \\
        --build before=/tmp/before --build after=. \\
        --database-url postgres://postgres@127.0.0.1:5432/bench_jobs_q

Each build's workers run from its own checkout (its `jobs/`, `orders/`, settings); the
queue, the rows and the clock are this checkout's, as in `bench/jobs_throughput.py`,
whose options (`--jobs`, `--processes`, `--threads`, `--prefetch`, ...) apply. The
builds must share the `Job` table's schema. Prints each round's rates, then per build
the median and its ratio to bare's median.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.jobs_throughput as throughput


def split_builds(argv: list[str]) -> tuple[dict[str, Path], list[str]]:
    """`--build NAME=PATH` options out of `argv`; the rest is for jobs_throughput."""
    builds: dict[str, Path] = {}
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--build" or arg.startswith("--build="):
            value = arg.partition("=")[2] if arg.startswith("--build=") else next(args, "")
            name, _, path = value.partition("=")
            checkout = Path(path).resolve()
            if not name or not (checkout / "manage.py").is_file():
                sys.exit(f"--build {value!r}: expected NAME=PATH to a checkout of Buzzer")
            builds[name] = checkout
        else:
            rest.append(arg)
    if not builds:
        sys.exit("give at least one --build NAME=PATH")
    return builds, rest


def main() -> None:
    builds, rest = split_builds(sys.argv[1:])
    sys.argv = [sys.argv[0], *rest]
    args = throughput.parse_args()
    throughput.prepare_database(args.database_url)
    throughput.setup_django(args)

    modes = ["bare", *builds]
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_no in range(args.rounds):
        shift = round_no % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            if mode != "bare":
                throughput.ROOT = builds[mode]  # the workers' checkout (cwd and PYTHONPATH)
            rate = throughput.drain(args, tracking=mode != "bare")
            rates[mode].append(rate)
            print(f"round {round_no + 1} {mode:12s} {rate:8.0f} jobs/s", flush=True)
    bare = statistics.median(rates["bare"])
    print(f"\nbare Dramatiq  median {bare:8.0f} jobs/s  rounds {[round(r) for r in rates['bare']]}")
    for name in builds:
        median = statistics.median(rates[name])
        rounds = [round(r) for r in rates[name]]
        print(f"{name:14s} median {median:8.0f} jobs/s  {median / bare:6.1%} of bare  rounds {rounds}")


if __name__ == "__main__":
    main()
