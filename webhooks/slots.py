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
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from django.conf import settings

from jobs.effects import EffectInProgress

logger = logging.getLogger(__name__)

# KEYS: the endpoint's slots, its waiters, its turn length. ARGV: token, limit, slot ttl
# ms, waiter. Returns {-1, 0, 0} when a slot is taken (the waiter leaves the line), else
# {how long (ms) the oldest delivery in flight has been running, how many others wait in
# line, how long a turn lasts lately (ms; -1 when not known)}.
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
  return {-1, 0, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local waiting = redis.call('ZCARD', KEYS[2])
if redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  waiting = waiting - 1
end
local turn = tonumber(redis.call('GET', KEYS[3]) or '-1')
return {now_ms - (tonumber(oldest[2]) - ttl), waiting, turn}
"""
# KEYS: the endpoint's slots, its turn length. ARGV: token, how long this turn took (ms),
# how long the turn length is kept (ms). A turn length is a decaying maximum: one slow
# turn counts fully, and a run of quick ones halves it each time.
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local took = tonumber(ARGV[2])
local before = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], math.max(took, math.floor(before / 2)), 'PX', ARGV[3])
return 1
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
# A turn is taken to last at least this long (the wake-up and the job's own round trips).
MIN_TURN_MS = 250
# Turns up to this long are quick; past it a turn is taken to be a timeout, as for an
# endpoint that hangs.
QUICK_TURN_MS = 1_000
# How long an endpoint's turn length is remembered after its last delivery.
TURN_MEMORY_MS = 3_600_000
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
    turn = f"{broker.namespace}:buzzer:webhook-turn:{endpoint_id}"
    token = uuid.uuid4().hex
    waiter = waiter or token
    ttl_ms = int((settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS + 20) * 1000)
    oldest_ms, waiting, turn_ms = client.register_script(_ACQUIRE)(
        keys=[key, line, turn], args=[token, limit, ttl_ms, waiter]
    )
    if int(oldest_ms) >= 0:
        delay_ms = _wait_ms(failing, int(oldest_ms), int(waiting), limit, turn_ms=int(turn_ms))
        if _slow_line(failing, int(oldest_ms), int(turn_ms)):  # its turn comes in the endpoint's line
            client.register_script(_JOIN)(keys=[line], args=[waiter, delay_ms + LINE_GRACE_MS])
        raise EffectInProgress(
            f"endpoint {endpoint_id} has {limit} deliveries in flight and {waiting} more waiting", delay_ms=delay_ms
        )
    started = time.monotonic()
    try:
        yield
    finally:
        took_ms = int((time.monotonic() - started) * 1000)
        try:
            client.register_script(_RELEASE)(keys=[key, turn], args=[token, took_ms, TURN_MEMORY_MS])
        except Exception:  # it expires by itself
            logger.warning("Could not free a delivery slot of endpoint %s", endpoint_id, exc_info=True)


def _slow_line(failing: bool, oldest_ms: int, turn_ms: int) -> bool:
    """Do the deliveries that find no free slot wait in the endpoint's line? Yes behind a
    failing endpoint, and behind one whose oldest request or recent turns took over
    QUICK_TURN_MS (a hanging receiver, also once resumed: its fresh holders hang too)."""
    return failing or oldest_ms > QUICK_TURN_MS or turn_ms > QUICK_TURN_MS


def _wait_ms(failing: bool, oldest_ms: int, waiting: int = 0, limit: int = 1, *, turn_ms: int = -1) -> int:
    """How long a delivery that found no free slot waits. Behind a busy, fast endpoint: a
    moment. Behind a slow one (its oldest request over a second old, or its recent turns
    slow: a hanging endpoint before its first failure is recorded, or after a resume):
    until its oldest request must end, plus a timeout for every `limit` deliveries ahead
    in line. Behind a failing one: a turn per `limit` deliveries, its own and those
    ahead, where a turn is a timeout, or less when the endpoint's recent turns were
    quicker (`turn_ms`: a receiver that is down refuses connections in a millisecond,
    and its line must not wait ten seconds a turn; one whose requests take over a second
    has turns of a timeout). Spread over half to one and a half
    of that, so that the line wakes about as often as a slot frees."""
    timeout_ms = settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS * 1000
    # A busy endpoint whose slots were just taken frees one in a moment.
    if not _slow_line(failing, oldest_ms, turn_ms):
        return int(random.uniform(200, 1000))  # noqa: S311 - spreading wake-ups, not a secret
    # A quick turn is one of an endpoint that fails fast (its recent turns and the
    # delivery in flight all under QUICK_TURN_MS); any slower, a turn is a timeout.
    quick = 0 <= turn_ms <= QUICK_TURN_MS and oldest_ms <= QUICK_TURN_MS
    per_turn = max(turn_ms, oldest_ms, MIN_TURN_MS) if quick else timeout_ms
    first = per_turn if failing else max(timeout_ms - oldest_ms, 500)
    turns_ahead = waiting // max(limit, 1)
    spread = random.uniform(0.5, 1.5) if turns_ahead else random.uniform(1.0, 1.5)  # noqa: S311
    return int(min((first + turns_ahead * per_turn) * spread, MAX_WAIT_MS))
