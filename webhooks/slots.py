"""Per-endpoint concurrency: at most BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY deliveries to
one endpoint are in flight at once, across every worker process, and at most
BUZZER_WEBHOOK_FAILING_ENDPOINT_CONCURRENCY to one whose last attempt failed (a circuit
half open: a hanging endpoint soon holds only that many threads).

A slot is a member of a sorted set in Redis scored by its expiry, so a slot whose worker
was killed frees itself once the longest possible delivery is over. A delivery that
finds no free slot raises `EffectInProgress`: the jobs backbone puts it back on its
queue as the same attempt, with a short backoff and no retry used, and the worker
thread moves on to a delivery for another endpoint.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from django.conf import settings

from jobs.effects import EffectInProgress

logger = logging.getLogger(__name__)

# KEYS: the endpoint's slots. ARGV: token, limit, ttl ms. -1 when taken, else how long
# (ms) the oldest delivery in flight has been running.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return now_ms - (tonumber(oldest[2]) - ttl)
"""


@contextmanager
def endpoint_slot(endpoint_id: object, *, failing: bool = False) -> Iterator[None]:
    """A slot for one delivery to the endpoint, or EffectInProgress. The wait it asks for:
    a second or so for a busy endpoint; for a failing one (its requests may take the
    whole timeout) about one timeout, so that hundreds of deliveries queued behind a
    hanging endpoint wake up rarely instead of spinning through the workers."""
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    limit = (
        settings.BUZZER_WEBHOOK_FAILING_ENDPOINT_CONCURRENCY
        if failing
        else settings.BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY
    )
    if client is None or limit <= 0:  # the stub broker of the unit tests; or no limit
        yield
        return
    key = f"{broker.namespace}:buzzer:webhook-slots:{endpoint_id}"
    token = uuid.uuid4().hex
    ttl_ms = int((settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS + 20) * 1000)
    oldest_ms = int(client.register_script(_ACQUIRE)(keys=[key], args=[token, limit, ttl_ms]))
    if oldest_ms >= 0:
        delay_ms = _wait_ms(failing, oldest_ms)
        raise EffectInProgress(f"endpoint {endpoint_id} has {limit} deliveries in flight", delay_ms=delay_ms)
    try:
        yield
    finally:
        try:
            client.zrem(key, token)
        except Exception:  # it expires by itself
            logger.warning("Could not free a delivery slot of endpoint %s", endpoint_id, exc_info=True)


def _wait_ms(failing: bool, oldest_ms: int) -> int:
    """How long a delivery that found no free slot waits: about a timeout behind a failing
    endpoint; until its oldest request must end behind a slow one (a hanging endpoint
    before its first failure is recorded); a moment behind a busy, fast one."""
    timeout_ms = settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS * 1000
    jitter = random.uniform(1.0, 1.5)  # noqa: S311 - spreading wake-ups, not a secret
    if failing:
        return int(timeout_ms * jitter)
    if oldest_ms > 1000:
        return int(max(timeout_ms - oldest_ms, 500) * jitter)
    return int(random.uniform(200, 1000))  # noqa: S311
