"""Rate-limit counters start from zero in every test."""

from __future__ import annotations

import redis
from django.conf import settings

import limits.services

# Limits that never bind, for the processes the suite starts (its load tests place
# hundreds of orders a second with one key); a test that wants a limit passes its own.
UNLIMITED = {f"BUZZER_RATELIMIT_{scope.upper()}": "1000000/s" for scope in limits.services.SCOPES}


def reset() -> None:
    """Forget every count (in the suite's Redis) and any Redis failure remembered."""
    limits.services._redis_refused_until = 0.0
    prefix = settings.CACHES[limits.services.CACHE]["KEY_PREFIX"]
    client = redis.Redis.from_url(settings.CACHES[limits.services.CACHE]["LOCATION"])
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
