"""The benchmark's worker module: Django set up as `rundramatiq` does, plus a no-op actor.

Run by bench/jobs_throughput.py as `python -m dramatiq bench.actors ...`.
"""

import django

django.setup()

import jobs  # noqa: E402 - the broker exists only after django.setup()


@jobs.actor(max_retries=0, time_limit=60_000)
def noop(n: int) -> None:
    """Does nothing: the benchmark measures the queue and the tracking, not the work."""
