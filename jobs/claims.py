"""Claims: which delivery of a job may run it.

A worker claims a job in Redis before running it, in one script call that also refuses
a job marked cancelled (`jobs.cancellation`). A worker process claims the jobs of each
batch it fetches in one call, in the consumer thread (`BuzzerConsumer._claim_fetched`),
so that its worker threads start without a round trip; with BUZZER_CLAIM_AT_FETCH off,
each worker thread claims its job at its start, the claims that the threads ask for at
the same moment sharing a call (`RedisClaims.claim`). A claim taken at fetch means
"held by this process", not "running": a cancel asks the process (`CancelListener`),
whose `StartGate` answers for sure whether the job started. The claim holds the
attempt number and the worker (Dramatiq broker id). A later delivery of the same attempt — the outbox sweep and the
after-commit send racing, or a message redelivered while its first worker still lives —
is skipped; a retry (a higher attempt) runs; a redelivery after its worker died runs
too, unless the job has killed its worker too often (a crash loop goes to the DLQ).

Claims are kept per generation of a job: a retry from the dead-letter queue starts a new
generation, so it never collides with the claims of the run that died.

The claim lives in Redis rather than in the Job row because a database round trip per
job, waited for by the worker thread, capped tracked throughput at a third to a half of
bare Dramatiq here (docs/BENCHMARKS.md); the Job row is written in batches instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from jobs.effects import COMPARE_AND_SET_SCRIPT, free_left_behind

logger = logging.getLogger(__name__)

# KEYS: heartbeats sorted set, the call's record and fence (see below), then per claim
# its claim key and its cancel mark. ARGV: now ms, dead-after ms, ttl s, the record's ttl
# s (0: no record; its two keys are then not used), the call's id, then per claim its
# attempt and worker. Returns per claim 1 when claimed, 0 when another delivery holds
# this attempt, "cancelled" when the job was cancelled, or the holder's id prefixed with
# "dead:" when it holds the same attempt but sends no more heartbeats. Each claim is
# decided atomically, as if alone: several ride in one call only to share a round trip
# (see RedisClaims.claim).
#
# The record makes a call whose reply was lost answerable (`RedisClaims.settle`): it
# holds the call's id and which of its claims it took, and a call finds its fence set
# when the settling came first, and then takes nothing.
_CLAIM_SCRIPT = """
local now, dead_after, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local record_ttl, call = tonumber(ARGV[4]), ARGV[5]
if record_ttl > 0 and redis.call('EXISTS', KEYS[3]) == 1 then return 'fenced' end
local results, taken = {}, {}
for i = 1, (#ARGV - 5) / 2 do
  local key, mark = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local attempt_text, worker = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local attempt = tonumber(attempt_text)
  local result = 1
  if redis.call('EXISTS', mark) == 1 then
    result = 'cancelled'
  else
    local current = redis.call('GET', key)
    if current then
      local sep = string.find(current, '|', 1, true)
      local held = tonumber(string.sub(current, 1, sep - 1))
      local holder = string.sub(current, sep + 1)
      if held > attempt then
        result = 0
      elseif held == attempt and holder ~= 'free' then
        if holder == worker then
          result = 0
        else
          local beat = redis.call('ZSCORE', KEYS[1], holder)
          if beat and now - tonumber(beat) < dead_after then result = 0 else result = 'dead:' .. holder end
        end
      end
    end
    if result == 1 then
      redis.call('SET', key, attempt_text .. '|' .. worker, 'EX', ttl)
      taken[#taken + 1] = i
    end
  end
  results[i] = result
end
if record_ttl > 0 then redis.call('SET', KEYS[2], call .. ':' .. table.concat(taken, ','), 'EX', record_ttl) end
return results
"""

# KEYS: a claim call's record, its fence. ARGV: the call's id, ttl s. Returns the
# numbers (from 1) of the claims that call took, comma-separated, when it ran; when it
# did not, sets its fence, so that it takes nothing if it runs later, and returns nil.
_SETTLE_SCRIPT = """
local record, prefix = redis.call('GET', KEYS[1]), ARGV[1] .. ':'
if record and string.sub(record, 1, #prefix) == prefix then return string.sub(record, #prefix + 1) end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return false
"""

# KEYS: claim key, crash counter. ARGV: expected value, new value, ttl s.
# Returns the number of crashes so far when taken over, 0 when someone else was first.
_TAKEOVER_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  local crashes = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return crashes
end
return 0
"""


# Release: KEYS: claim key. ARGV: the holder's value ("attempt|worker"), the released
# value, ttl s. The same attempt may then be claimed again (its delivery ended on an
# infrastructure error and was sent again); a lower attempt still may not.
_RELEASE_SCRIPT = COMPARE_AND_SET_SCRIPT

# KEYS: claim key, cancel mark. ARGV: mark ttl s. Marks the job cancelled (no delivery
# claims it from now on) and returns {1 if this call set the mark, the claim or ''}.
_CANCEL_SCRIPT = """
local new = redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1])
return {new and 1 or 0, redis.call('GET', KEYS[1]) or ''}
"""
CANCELLED = "cancelled"
# How long a cancel waits for the answer of a worker process that holds the job fetched.
ASK_SECONDS = 2
ASK_KEY_TTL_SECONDS = 60
# A cancelled job's mark outlives any message of it that Redis may still deliver.
CANCEL_TTL_SECONDS = 7 * 86_400


class Claims(Protocol):
    def claim(self, job_key: str, attempt: int, worker: str) -> bool | str: ...

    def take_over(self, job_key: str, attempt: int, dead_worker: str, worker: str) -> int: ...

    def clear_crashes(self, job_key: str) -> None: ...

    def release(self, job_key: str, attempt: int, worker: str) -> bool: ...

    def release_many(self, claims: list[tuple[str, int, str]]) -> None: ...

    def ask_holder(self, job_key: str, holder: str) -> bool: ...

    def mark_cancelled(self, job_key: str) -> tuple[bool, str | None]: ...

    def cancel_requested(self, job_key: str) -> bool: ...


def job_key(job_id: str, generation: int) -> str:
    return f"{job_id}:{generation}"


class ClaimInterrupted(Exception):
    """The round trip that carried this claim was interrupted in the thread sending it."""


class _ClaimBatch:
    """Claims of several worker threads that go out in one round trip."""

    __slots__ = ("done", "error", "requests", "results", "turn")

    def __init__(self) -> None:
        self.requests: list[tuple[str, int, str]] = []
        self.results: list[bool | str] | None = None
        self.error: Exception | None = None
        self.turn = threading.Event()  # the round trip before it is back: its first thread sends it
        self.done = threading.Event()  # its results are in


class RedisClaims:
    def __init__(self, broker: Any, ttl_seconds: int, dead_after_seconds: float) -> None:
        self.client = broker.client
        self.heartbeats = f"{broker.namespace}:__heartbeats__"
        self.dead_after_ms = int(dead_after_seconds * 1000)
        self.prefix = f"{broker.namespace}:buzzer:claim:"
        self.crash_prefix = f"{broker.namespace}:buzzer:crashes:"
        self.cancel_prefix = f"{broker.namespace}:buzzer:cancel:"
        self.asks_prefix = f"{broker.namespace}:buzzer:cancel-asks:"
        self.ttl = ttl_seconds
        self._claim = self.client.register_script(_CLAIM_SCRIPT)
        self._take_over = self.client.register_script(_TAKEOVER_SCRIPT)
        self._release = self.client.register_script(_RELEASE_SCRIPT)
        self._cancel = self.client.register_script(_CANCEL_SCRIPT)
        self._settle = self.client.register_script(_SETTLE_SCRIPT)
        self.calls_prefix = f"{broker.namespace}:buzzer:claim-call:"
        self._gather = threading.Lock()
        self._busy = False  # a batch of claims is on the wire
        self._next: _ClaimBatch | None = None  # the claims that wait for it

    def claim(self, job_key: str, attempt: int, worker: str) -> bool | str:
        """True when this delivery may run; "dead:<worker>" when the holder is dead;
        "cancelled" when the job was cancelled.

        The worker threads of a process share round trips (a group commit, as the batch
        writer does for the database): a claim asked for while another one is on the
        wire waits for that round trip to end and goes out with every claim asked for
        meanwhile, in one script call. Each is still decided atomically, before its own
        job starts; a lone claim goes out at once."""
        with self._gather:
            if not self._busy:
                self._busy = True
                batch, index, queued = _ClaimBatch(), 0, False
                batch.requests.append((job_key, attempt, worker))
            else:
                if self._next is None:
                    self._next = _ClaimBatch()
                batch, index, queued = self._next, len(self._next.requests), True
                batch.requests.append((job_key, attempt, worker))
        if index == 0:  # this thread sends the batch: at once, or when the one on the wire is back
            if queued:
                batch.turn.wait()
            self._send(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[index]

    def _send(self, batch: _ClaimBatch) -> None:
        try:
            batch.results = self.claim_all(batch.requests)
        except Exception as exc:  # noqa: BLE001 - raised in every thread of the batch
            batch.error = exc
        except BaseException:  # interrupted (time limit, shutdown): the others retry their attempts
            batch.error = ClaimInterrupted("The round trip of this claim was interrupted.")
            raise
        finally:
            batch.done.set()
            with self._gather:
                following, self._next = self._next, None
                if following is None:
                    self._busy = False
            if following is not None:
                following.turn.set()

    def claim_all(
        self, requests: list[tuple[str, int, str]], record: tuple[str, str] | None = None
    ) -> list[bool | str]:
        """Claim several deliveries in one round trip (each as `claim` would). With
        `record` (a record name and the call's id, unique in it), Redis keeps what the
        call took, for `settle` to tell if its reply is lost."""
        if record is None:
            keys = [self.heartbeats, self.heartbeats, self.heartbeats]  # no record: not used
            args: list[Any] = [int(time.time() * 1000), self.dead_after_ms, self.ttl, 0, ""]
        else:
            name, call = record
            keys = [self.heartbeats, *self._call_keys(name, call)]
            args = [int(time.time() * 1000), self.dead_after_ms, self.ttl, self.ttl, call]
        for key, attempt, worker in requests:
            keys += (self.prefix + key, self.cancel_prefix + key)
            args += (attempt, worker)
        try:
            # EVALSHA itself: redis-py's Script call costs more than the command here.
            raw = self.client.execute_command("EVALSHA", self._claim.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or flushed its scripts: this call loads it again
            raw = self._claim(keys=keys, args=args)
        if isinstance(raw, bytes):  # b"fenced": settled as lost before it ran (no caller waits for it)
            raise ClaimInterrupted("This claim call was settled as lost before it ran.")
        return [item.decode() if isinstance(item, bytes) else bool(item) for item in raw]

    def settle(self, name: str, call: str) -> list[int]:
        """Which claims (their indexes in its requests) a recorded `claim_all` call took,
        when its caller never got the reply (the connection dropped, or timed out, after
        the call was sent): none when the call never ran, and from now on never will."""
        taken = self._settle(keys=self._call_keys(name, call), args=[call, self.ttl])
        if not taken:
            return []
        return [int(number) - 1 for number in taken.decode().split(",") if number]

    def _call_keys(self, name: str, call: str) -> list[str]:
        """The record of the claim calls named `name`, and the fence of one of them."""
        return [self.calls_prefix + name, f"{self.calls_prefix}{name}:fence:{call}"]

    def take_over(self, job_key: str, attempt: int, dead_worker: str, worker: str) -> int:
        """Take a dead worker's claim; returns how many workers this job has killed (0: lost the race)."""
        return int(
            self._take_over(
                keys=[self.prefix + job_key, self.crash_prefix + job_key],
                args=[f"{attempt}|{dead_worker}", f"{attempt}|{worker}", self.ttl],
            )
        )

    def clear_crashes(self, job_key: str) -> None:
        """A taken-over job ran to its end: it did not kill its worker."""
        self.client.delete(self.crash_prefix + job_key)

    def release(self, job_key: str, attempt: int, worker: str) -> bool:
        """Give up this delivery's claim so that a new delivery of the same attempt may run."""
        return bool(
            self._release(keys=[self.prefix + job_key], args=[f"{attempt}|{worker}", f"{attempt}|free", self.ttl])
        )

    def release_many(self, claims: list[tuple[str, int, str]]) -> None:
        """Release several claims (each as `release` would) in one round trip."""
        if not claims:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for key, attempt, worker in claims:
                self._release(
                    keys=[self.prefix + key], args=[f"{attempt}|{worker}", f"{attempt}|free", self.ttl], client=pipe
                )
            pipe.execute()

    def ask_holder(self, job_key: str, holder: str) -> bool:
        """Ask the worker process that claimed this job when it fetched it whether the job
        has started there. True: it had not, and now never will (`StartGate`); False: it
        has started, or the worker did not answer (dead, or too busy) within ASK_SECONDS."""
        beat = self.client.zscore(self.heartbeats, holder)
        if beat is None or time.time() * 1000 - beat >= self.dead_after_ms:
            return False  # no answer will come; a redelivery meets the cancel mark
        reply = f"{self.asks_prefix}reply:{uuid.uuid4().hex}"
        asks = self.asks_prefix + holder
        with self.client.pipeline(transaction=False) as pipe:
            pipe.rpush(asks, f"{job_key}|{reply}")
            pipe.expire(asks, ASK_KEY_TTL_SECONDS)
            pipe.execute()
        answer = self.client.blpop([reply], timeout=ASK_SECONDS)
        return answer is not None and answer[1] == b"dropped"

    def mark_cancelled(self, job_key: str) -> tuple[bool, str | None]:
        """Cancel the job in Redis: no delivery claims it from now on. Returns whether
        this call set the mark and the claim as it was ("attempt|worker", or None)."""
        new, current = self._cancel(
            keys=[self.prefix + job_key, self.cancel_prefix + job_key], args=[CANCEL_TTL_SECONDS]
        )
        return bool(new), current.decode() if current else None

    def cancel_requested(self, job_key: str) -> bool:
        return bool(self.client.exists(self.cancel_prefix + job_key))


class MemoryClaims:
    """Claims for the stub broker (one process, no heartbeats: every holder is alive)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, str]] = {}
        self._crashes: dict[str, int] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, job_key: str, attempt: int, worker: str) -> bool | str:
        with self._lock:
            if job_key in self._cancelled:
                return CANCELLED
            held = self._held.get(job_key)
            if held is not None and held[0] >= attempt:
                return False
            self._held[job_key] = (attempt, worker)
            return True

    def take_over(self, job_key: str, attempt: int, dead_worker: str, worker: str) -> int:
        with self._lock:
            if self._held.get(job_key) != (attempt, dead_worker):
                return 0
            self._held[job_key] = (attempt, worker)
            self._crashes[job_key] = self._crashes.get(job_key, 0) + 1
            return self._crashes[job_key]

    def clear_crashes(self, job_key: str) -> None:
        with self._lock:
            self._crashes.pop(job_key, None)

    def release(self, job_key: str, attempt: int, worker: str) -> bool:
        with self._lock:
            if self._held.get(job_key) != (attempt, worker):
                return False
            self._held[job_key] = (attempt - 1, "free")
            return True

    def release_many(self, claims: list[tuple[str, int, str]]) -> None:
        for claim in claims:
            self.release(*claim)

    def ask_holder(self, job_key: str, holder: str) -> bool:
        return False  # the stub broker claims at start, never at fetch

    def mark_cancelled(self, job_key: str) -> tuple[bool, str | None]:
        with self._lock:
            new = job_key not in self._cancelled
            self._cancelled.add(job_key)
            held = self._held.get(job_key)
            return new, f"{held[0]}|{held[1]}" if held else None

    def cancel_requested(self, job_key: str) -> bool:
        with self._lock:
            return job_key in self._cancelled


def workers_key(namespace: str) -> str:
    """Sorted set of "<broker id>|<host>|<pid>" by last beat (ms) of worker processes."""
    return f"{namespace}:buzzer:workers"


def claims_for(broker: Any) -> Claims:
    from django.conf import settings

    if getattr(broker, "client", None) is not None:
        return RedisClaims(broker, settings.BUZZER_CLAIM_TTL_SECONDS, settings.BUZZER_WORKER_DEAD_AFTER_SECONDS)
    store = getattr(broker, "_buzzer_claims", None)
    if store is None:
        store = broker._buzzer_claims = MemoryClaims()
    return store


_unreleased: list[tuple[str, int, str]] = []
_unreleased_lock = threading.Lock()


def release_later(claim: tuple[str, int, str]) -> None:
    """A claim that could not be released (Redis away): the heartbeat thread releases it
    once Redis answers. Until then a redelivery is skipped as "running elsewhere"; the
    lost-message scan sends the job again after that."""
    with _unreleased_lock:
        _unreleased.append(claim)


def release_pending(claims: Claims) -> None:
    with _unreleased_lock:
        pending = list(_unreleased)
        _unreleased.clear()
    for index, claim in enumerate(pending):
        try:
            claims.release(*claim)
        except Exception:  # noqa: BLE001 - still away: keep it and the rest for the next beat
            with _unreleased_lock:
                _unreleased.extend(pending[index:])
            return


class Heartbeat:
    """Beats for a worker process every few seconds, in the sorted set Dramatiq uses.

    Dramatiq beats only when a consumer fetches or acks, so a worker whose threads are
    all busy with long jobs falls silent and looks dead; this thread keeps it alive.
    """

    def __init__(self, broker: Any, interval: float) -> None:
        self.broker = broker
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="buzzer-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        heartbeats = f"{self.broker.namespace}:__heartbeats__"
        # Dramatiq's set also holds every process that only sends (web, scheduler); this
        # one holds worker processes only, for the dashboard and the health check.
        workers = workers_key(self.broker.namespace)
        while not self._stop.is_set():
            now = int(time.time() * 1000)
            try:
                with self.broker.client.pipeline(transaction=False) as pipe:
                    pipe.zadd(heartbeats, {self.broker.broker_id: now})
                    pipe.zadd(workers, {f"{self.broker.broker_id}|{socket.gethostname()}|{os.getpid()}": now})
                    pipe.execute()
                if _unreleased:
                    release_pending(claims_for(self.broker))
                free_left_behind(self.broker.client)
            except Exception as exc:  # noqa: BLE001 - Redis away: the next beat tries again
                logger.debug("Heartbeat failed: %s", exc)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


class StartGate:
    """The jobs that this worker process claimed when it fetched them and has not started
    yet, and those a cancel dropped before they did. A worker thread passes the gate
    before it runs such a job; the cancel listener asks it on a canceller's behalf. One
    lock decides which of the two came first, so the canceller's answer is the truth:
    "dropped" means the job never starts here; otherwise it has started here, or this
    process no longer holds it (put back: its next delivery meets the cancel mark).

    Memory stays small: waiting keys number at most what the process has fetched, and
    the dropped ones (cancels only) keep the newest REMEMBERED."""

    REMEMBERED = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[str] = set()
        self._dropped: OrderedDict[str, None] = OrderedDict()

    def hold(self, job_keys: list[str]) -> None:
        """Claimed at fetch: they wait here for a worker thread."""
        with self._lock:
            self._waiting.update(job_keys)

    def let_go(self, job_keys: list[str]) -> None:
        """Put back unstarted, their claims released."""
        with self._lock:
            self._waiting.difference_update(job_keys)

    def start(self, job_key: str) -> bool:
        """Before the job runs: False when a cancel dropped it."""
        with self._lock:
            if job_key in self._dropped:
                return False
            self._waiting.discard(job_key)
            return True

    def drop(self, job_key: str) -> bool:
        """For a cancel: True when the job was waiting here (and now never starts here)."""
        with self._lock:
            if job_key in self._dropped:
                return True
            if job_key not in self._waiting:
                return False
            self._waiting.discard(job_key)
            self._dropped[job_key] = None
            if len(self._dropped) > self.REMEMBERED:
                self._dropped.popitem(last=False)
            return True


def start_gate(broker: Any) -> StartGate:
    """The worker process's gate (one per broker, made on first use)."""
    gate = getattr(broker, "_buzzer_start_gate", None)
    if gate is None:
        with _unreleased_lock:
            gate = getattr(broker, "_buzzer_start_gate", None)
            if gate is None:
                gate = broker._buzzer_start_gate = StartGate()
    return gate


class CancelListener:
    """Answers cancels of jobs that this worker process claimed when it fetched them
    (`jobs.cancellation`): reads the asks on its own list, lets the start gate decide,
    and replies on the list each ask names ("dropped" or "started")."""

    def __init__(self, broker: Any, gate: StartGate) -> None:
        self.broker = broker
        self.gate = gate
        self.asks = f"{broker.namespace}:buzzer:cancel-asks:{broker.broker_id}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="buzzer-cancels", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client = self.broker.client
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        block = max(0.1, min(1.0, socket_timeout - 0.5)) if socket_timeout else 1.0
        while not self._stop.is_set():
            try:
                item = client.blpop([self.asks], timeout=block)
                if item is None:
                    continue
                job_key, _, reply = item[1].decode().rpartition("|")
                answer = "dropped" if self.gate.drop(job_key) else "started"
                with client.pipeline(transaction=False) as pipe:
                    pipe.rpush(reply, answer)
                    pipe.expire(reply, ASK_KEY_TTL_SECONDS)
                    pipe.execute()
            except Exception as exc:  # noqa: BLE001 - Redis away: the canceller times out meanwhile
                logger.debug("Cancel listener: %s", exc)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
