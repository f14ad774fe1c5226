"""Per-actor and per-queue counters in Redis, written by each worker's batch writer.

The writer hands every committed batch of finishes to `recorder_for(broker)`'s callable,
which records them with one pipelined round trip:

- `<ns>:buzzer:stats:m:<minute>` (a hash per minute, kept ~25 hours): finished attempts
  per actor and status (`c|<actor>|<status>`) and a run-time histogram per actor
  (`h|<actor>|<bucket>`), for the dashboard's last hour;
- `<ns>:buzzer:stats:totals`: the same counts since the beginning (Prometheus counters);
- `<ns>:buzzer:stats:histograms`: run time and queue wait histograms per queue and actor
  since the beginning (`<run|wait>|<queue>|<actor>|<bucket>`, and `…|sum` in
  microseconds), for Prometheus: counters that only grow, so that rate() and
  histogram_quantile() can aggregate them across workers and time;
- `<ns>:buzzer:stats:unsampled`: finished and failed attempts per queue since the
  scheduler last took a sample (`take_queue_counts` reads and resets them atomically).

Counting happens in Redis rather than in the Job table because the table is pruned, and
a COUNT over it every few seconds would compete with the writer for the database.
Actor names are arbitrary strings: a field is split on its first and last "|" only (and
on its second for the queue, whose name Dramatiq keeps to `[a-zA-Z0-9._-]`).

The queue wait of an attempt is the time from its message becoming ready to run (sent,
or its eta after a delay or a retry's backoff) to the attempt's start, both of which ride
on the finish event: it costs no round trip of its own.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.writer import Finished

# Upper bounds (seconds) of the run-time histogram: log scale, 1 ms to 10 min; one more
# bucket holds everything slower.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    600.0,
)
# Upper bounds (seconds) of the queue wait histogram: 5 ms to an hour (a backlog).
WAIT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
HISTOGRAM_BOUNDS: dict[str, tuple[float, ...]] = {"run": BUCKETS, "wait": WAIT_BUCKETS}
MINUTE_TTL_SECONDS = 25 * 3600  # a day of minutes, and an hour to spare for the slow reader
FAILED_STATUSES = ("retrying", "dead")


def minute_key(namespace: str, minute: int) -> str:
    return f"{namespace}:buzzer:stats:m:{minute}"


def totals_key(namespace: str) -> str:
    return f"{namespace}:buzzer:stats:totals"


def histograms_key(namespace: str) -> str:
    return f"{namespace}:buzzer:stats:histograms"


def unsampled_key(namespace: str) -> str:
    return f"{namespace}:buzzer:stats:unsampled"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def bucket_of(seconds: float, bounds: tuple[float, ...] = BUCKETS) -> int:
    """Index of the histogram bucket for a time, a bound belonging to its bucket as in
    Prometheus' `le` (len(bounds) for the overflow)."""
    return bisect.bisect_left(bounds, seconds)


def queue_wait(event: Finished) -> float | None:
    """Seconds from the message becoming ready to run to the attempt's start (None when
    it never started or its message did not say; 0 when the clocks disagree)."""
    if event.started_at is None or not event.enqueued_ms:
        return None
    return max(event.started_at.timestamp() - event.enqueued_ms / 1000, 0.0)


# One command per hash instead of one per field: redis-py spends far more packing and
# parsing a command than Redis running it, and a batch touches many histogram buckets.
HINCRBY_ALL = "for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end"


def _hincrby_all(pipe: Any, key: str, fields: dict[str, int]) -> None:
    if fields:
        pipe.eval(HINCRBY_ALL, 1, key, *(item for pair in fields.items() for item in pair))


def _observe(series: dict[tuple[str, str, str], list[float]], kind: str, event: Finished, seconds: float) -> None:
    """Add one observation to the batch's (kind, queue, actor) bucket counts and sum."""
    bounds = HISTOGRAM_BOUNDS[kind]
    entry = series.get((kind, event.queue_name, event.actor_name))
    if entry is None:
        entry = series[(kind, event.queue_name, event.actor_name)] = [0] * (len(bounds) + 2)  # buckets, sum
    entry[bucket_of(seconds, bounds)] += 1
    entry[-1] += seconds


def _histogram_fields(series: dict[tuple[str, str, str], list[float]]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for (kind, queue_name, actor_name), entry in series.items():
        prefix = f"{kind}|{queue_name}|{actor_name}|"
        for index, count in enumerate(entry[:-1]):
            if count:
                fields[f"{prefix}{index}"] = int(count)
        fields[f"{prefix}sum"] = round(entry[-1] * 1_000_000)
    return fields


def record(client: Any, namespace: str, events: list[Finished]) -> None:
    """Count a batch of finished attempts (one round trip, however large the batch)."""
    per_minute: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    unsampled: dict[str, int] = defaultdict(int)
    histograms: dict[tuple[str, str, str], list[float]] = {}
    for event in events:
        minute = int(event.at.timestamp() // 60)
        count_field = f"c|{event.actor_name}|{event.status}"
        per_minute[minute][count_field] += 1
        totals[count_field] += 1
        duration = event.duration
        if duration is not None:  # a job dead-lettered before it ran has no run time
            duration = max(duration, 0.0)
            per_minute[minute][f"h|{event.actor_name}|{bucket_of(duration)}"] += 1
            _observe(histograms, "run", event, duration)
        wait = queue_wait(event)
        if wait is not None:
            _observe(histograms, "wait", event, wait)
        unsampled[f"{event.queue_name}|processed"] += 1
        if event.status in FAILED_STATUSES:
            unsampled[f"{event.queue_name}|failed"] += 1
    if not totals:
        return
    with client.pipeline(transaction=False) as pipe:
        for minute, fields in per_minute.items():
            _hincrby_all(pipe, minute_key(namespace, minute), fields)
            pipe.expire(minute_key(namespace, minute), MINUTE_TTL_SECONDS)
        _hincrby_all(pipe, totals_key(namespace), totals)
        _hincrby_all(pipe, histograms_key(namespace), _histogram_fields(histograms))
        _hincrby_all(pipe, unsampled_key(namespace), unsampled)
        # Only the scheduler empties it: without one it must not stay forever.
        pipe.expire(unsampled_key(namespace), MINUTE_TTL_SECONDS)
        pipe.execute()


def recorder_for(broker: Any) -> Callable[[list[Finished]], None] | None:
    """The batch writer's `on_written` callable for `broker` (None without Redis)."""
    client = getattr(broker, "client", None)
    if client is None:
        return None
    namespace = broker.namespace

    def record_batch(events: list[Finished]) -> None:
        record(client, namespace, events)

    return record_batch


@dataclass
class QueueCounts:
    processed: int = 0
    failed: int = 0


def take_queue_counts(client: Any, namespace: str) -> dict[str, QueueCounts]:
    """Finished and failed attempts per queue since the last call, and reset them.

    Read and delete run in one MULTI/EXEC, so an increment lands in exactly one sample.
    """
    with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(unsampled_key(namespace))
        pipe.delete(unsampled_key(namespace))
        raw, _ = pipe.execute()
    counts: dict[str, QueueCounts] = defaultdict(QueueCounts)
    for field, value in raw.items():
        queue_name, _, kind = _text(field).rpartition("|")
        setattr(counts[queue_name], kind, int(value))
    return dict(counts)


@dataclass
class ActorStats:
    actor_name: str
    succeeded: int = 0
    retrying: int = 0
    dead: int = 0
    minutes: int = 60
    p50: float | None = None  # seconds
    p95: float | None = None

    @property
    def finished(self) -> int:
        return self.succeeded + self.retrying + self.dead

    @property
    def throughput(self) -> float:
        """Finished attempts per minute over the window."""
        return self.finished / self.minutes

    @property
    def failure_rate(self) -> float:
        return (self.retrying + self.dead) / self.finished if self.finished else 0.0


def quantile(histogram: list[int], q: float) -> float | None:
    """Estimate the q-quantile from bucket counts, interpolating linearly inside the
    bucket (as Prometheus' histogram_quantile does); the overflow bucket answers its
    lower bound, the slowest figure the histogram can vouch for."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            if index >= len(BUCKETS):
                return BUCKETS[-1]
            lower = BUCKETS[index - 1] if index else 0.0
            return lower + (BUCKETS[index] - lower) * (rank - seen) / count
        seen += count
    return BUCKETS[-1]


def actor_stats(client: Any, namespace: str, minutes: int = 60, now: float | None = None) -> list[ActorStats]:
    """Per actor over the last `minutes` (the current minute included): counts by
    status, throughput, failure rate and p50/p95 run time."""
    current = int((time.time() if now is None else now) // 60)
    with client.pipeline(transaction=False) as pipe:
        for minute in range(current - minutes + 1, current + 1):
            pipe.hgetall(minute_key(namespace, minute))
        buckets = pipe.execute()
    stats: dict[str, ActorStats] = {}
    histograms: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
    for fields in buckets:
        for raw_field, raw_value in fields.items():
            kind, _, rest = _text(raw_field).partition("|")
            actor_name, _, tail = rest.rpartition("|")
            value = int(raw_value)
            if kind == "c" and tail in ("succeeded", "retrying", "dead"):
                entry = stats.setdefault(actor_name, ActorStats(actor_name, minutes=minutes))
                setattr(entry, tail, getattr(entry, tail) + value)
            elif kind == "h" and tail.isdigit() and int(tail) <= len(BUCKETS):
                histograms[actor_name][int(tail)] += value
    for actor_name, histogram in histograms.items():
        entry = stats.setdefault(actor_name, ActorStats(actor_name, minutes=minutes))
        entry.p50 = quantile(histogram, 0.5)
        entry.p95 = quantile(histogram, 0.95)
    return sorted(stats.values(), key=lambda s: s.actor_name)


def totals(client: Any, namespace: str) -> dict[tuple[str, str], int]:
    """Finished attempts per (actor, status) since counting began."""
    result: dict[tuple[str, str], int] = {}
    for raw_field, raw_value in client.hgetall(totals_key(namespace)).items():
        _, _, rest = _text(raw_field).partition("|")
        actor_name, _, status = rest.rpartition("|")
        result[(actor_name, status)] = int(raw_value)
    return result


@dataclass
class Histogram:
    """One histogram since counting began: counts per bucket (the overflow last) and the
    sum of the observations in seconds."""

    bounds: tuple[float, ...]
    counts: list[int]
    sum: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at most that long) per bound, as Prometheus'
        `_bucket{le=…}`; the +Inf bucket is `count`."""
        result: list[tuple[float, int]] = []
        seen = 0
        for bound, count in zip(self.bounds, self.counts[:-1], strict=True):
            seen += count
            result.append((bound, seen))
        return result


def histograms(client: Any, namespace: str) -> dict[tuple[str, str, str], Histogram]:
    """Run time ("run") and queue wait ("wait") histograms by (kind, actor, queue)."""
    result: dict[tuple[str, str, str], Histogram] = {}
    for raw_field, raw_value in client.hgetall(histograms_key(namespace)).items():
        kind, _, rest = _text(raw_field).partition("|")
        queue_name, _, rest = rest.partition("|")
        actor_name, _, tail = rest.rpartition("|")
        bounds = HISTOGRAM_BOUNDS.get(kind)
        if bounds is None:
            continue
        entry = result.get((kind, actor_name, queue_name))
        if entry is None:
            entry = result[(kind, actor_name, queue_name)] = Histogram(bounds, [0] * (len(bounds) + 1))
        if tail == "sum":
            entry.sum = int(raw_value) / 1_000_000
        elif tail.isdigit() and int(tail) <= len(bounds):
            entry.counts[int(tail)] += int(raw_value)
    return result
