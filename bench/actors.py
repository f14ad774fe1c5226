"""The benchmarks' actors, and their worker module: Django set up as `rundramatiq` does.

Run by bench/jobs_throughput.py as `python -m dramatiq bench.actors ...`; loaded by the
`runworkers` processes of bench/premium_latency.py through bench/settings.py (which
installs `bench` as an app whose `actors` module is discovered like a `tasks` one).
"""

import time

import django
from django.apps import apps

if not apps.ready:  # `python -m dramatiq bench.actors`; rundramatiq has set Django up already
    django.setup()

import jobs  # the broker exists only after django.setup()


@jobs.actor(max_retries=0, time_limit=60_000)
def noop(n: int) -> None:
    """Does nothing: the benchmark measures the queue and the tracking, not the work."""


@jobs.actor(max_retries=0, time_limit=60_000)
def sleep(seconds: float) -> None:
    """Holds its worker thread for `seconds`: standard work that keeps every thread busy."""
    time.sleep(seconds)
