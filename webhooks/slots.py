"""Per-endpoint concurrency: at most BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY deliveries to
one endpoint are in flight at once, across every worker process, and at most
BUZZER_WEBHOOK_FAILING_ENDPOINT_CONCURRENCY to one whose last attempt failed (a circuit
half open: a hanging endpoint soon holds only that many threads).

A slot is a member of a sorted set in Redis scored by its expiry, so a slot whose worker
was killed frees itself once the longest possible delivery is over. A delivery that
finds no free slot raises `EffectInProgress`: the jobs backbone puts it back on its
queue as the same attempt, with the wait it asks for and no retry used, and the worker
thread moves on to a delivery for another endpoint.

Behind a slow or failing endpoint the deliveries that wait form a line (a second sorted
set, each waiter scored by when its wait ends): a waiter sleeps about as long as the
deliveries ahead of it take to go through the free slots, so the hundreds of deliveries
queued behind a hanging endpoint wake up about as often as a slot frees, instead of
each one waking every timeout to find the slots still taken (a job run each, spending
the CPU and database writes that the orders' jobs need).
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

# KEYS: the endpoint's slots, its waiters. ARGV: token, limit, slot ttl ms, waiter.
# Returns {-1, 0} when a slot is taken (the waiter leaves the line), else {how long (ms)
# the oldest delivery in flight has been running, how many others wait in line}.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZREM', KEYS[2], ARGV[4])
  return {-1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local waiting = redis.call('ZCARD', KEYS[2])
if redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  waiting = waiting - 1
end
return {now_ms - (tonumber(oldest[2]) - ttl), waiting}
"""
# KEYS: the endpoint's waiters. ARGV: waiter, how long it stays in line (ms).
_JOIN = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""
# A waiter stays in line this long after its wait should have ended (its worker died, or
# it ran late): then it no longer counts.
LINE_GRACE_MS = 10_000
# The longest wait asked for (Dramatiq holds a delayed message for at most 7 days).
MAX_WAIT_MS = 3_600_000


@contextmanager
def endpoint_slot(endpoint_id: object, *, failing: bool = False, waiter: str = "") -> Iterator[None]:
    """A slot for one delivery to the endpoint, or EffectInProgress with the wait it asks
    for: a second or so behind a busy endpoint; behind a slow or failing one (its
    requests may take the whole timeout) its turn in the line of waiters. `waiter`
    names the delivery in that line."""
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
    line = f"{broker.namespace}:buzzer:webhook-waiters:{endpoint_id}"
    token = uuid.uuid4().hex
    waiter = waiter or token
    ttl_ms = int((settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS + 20) * 1000)
    oldest_ms, waiting = client.register_script(_ACQUIRE)(keys=[key, line], args=[token, limit, ttl_ms, waiter])
    if int(oldest_ms) >= 0:
        delay_ms = _wait_ms(failing, int(oldest_ms), int(waiting), limit)
        if failing or int(oldest_ms) > 1000:  # a slow line: take a place in it
            client.register_script(_JOIN)(keys=[line], args=[waiter, delay_ms + LINE_GRACE_MS])
        raise EffectInProgress(
            f"endpoint {endpoint_id} has {limit} deliveries in flight and {waiting} more waiting", delay_ms=delay_ms
        )
    try:
        yield
    finally:
        try:
            client.zrem(key, token)
        except Exception:  # it expires by itself
            logger.warning("Could not free a delivery slot of endpoint %s", endpoint_id, exc_info=True)


def _wait_ms(failing: bool, oldest_ms: int, waiting: int = 0, limit: int = 1) -> int:
    """How long a delivery that found no free slot waits. Behind a busy, fast endpoint: a
    moment. Behind a slow one (a hanging endpoint before its first failure is recorded):
    until its oldest request must end, plus a timeout for every `limit` deliveries ahead
    in line. Behind a failing one: a timeout per turn, its own and those ahead. Spread
    over half to one and a half of that, so that the line wakes about as often as a slot
    frees."""
    timeout_ms = settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS * 1000
    if not failing and oldest_ms <= 1000:
        return int(random.uniform(200, 1000))  # noqa: S311 - spreading wake-ups, not a secret
    first = timeout_ms if failing else max(timeout_ms - oldest_ms, 500)
    turns_ahead = waiting // max(limit, 1)
    spread = random.uniform(0.5, 1.5) if turns_ahead else random.uniform(1.0, 1.5)  # noqa: S311
    return int(min((first + turns_ahead * timeout_ms) * spread, MAX_WAIT_MS))
