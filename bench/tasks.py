"""Probe actors of the benchmarks (loaded by the workers only with bench.settings)."""

from __future__ import annotations

import time

import dramatiq

import jobs


def starts_key() -> str:
    from django.conf import settings

    return f"{settings.BUZZER_NAMESPACE}:bench:idle-latency:starts"


@jobs.actor(max_retries=0, time_limit=60_000)
def idle_probe(token: str) -> None:
    """Records when it started (wall clock, same host as the sender) and nothing else:
    bench/idle_latency.py measures the way to the actor, not the work."""
    started = time.time()
    dramatiq.get_broker().client.rpush(starts_key(), f"{token} {started!r}")
