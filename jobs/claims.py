"""Claims: which delivery of a job may run it.

A worker claims a job in Redis before running it: one `SET NX` for a first delivery,
a short script for the rare rest. The claim holds the attempt number and the worker
(Dramatiq broker id). A later delivery of the same attempt — the outbox sweep and the
after-commit send racing, or a message redelivered while its first worker still lives —
is skipped; a retry (a higher attempt) or a redelivery after its worker died runs.

The claim lives in Redis rather than in the Job row because a database round trip per
job, waited for by the worker thread, capped tracked throughput at a third to a half of
bare Dramatiq here (docs/BENCHMARKS.md); the Job row is written in batches instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

# KEYS: claim key, heartbeats sorted set. ARGV: attempt, worker, now ms, heartbeat timeout ms, ttl s.
# Returns 1 when claimed, 0 when another delivery holds this attempt, or the holder's
# id prefixed with "dead:" when it holds the same attempt but sends no more heartbeats.
_CLAIM_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local attempt = tonumber(ARGV[1])
if current then
  local sep = string.find(current, '|', 1, true)
  local held = tonumber(string.sub(current, 1, sep - 1))
  local holder = string.sub(current, sep + 1)
  if held > attempt then return 0 end
  if held == attempt then
    if holder == ARGV[2] then return 0 end
    local beat = redis.call('ZSCORE', KEYS[2], holder)
    if beat and tonumber(ARGV[3]) - tonumber(beat) < tonumber(ARGV[4]) then return 0 end
    return 'dead:' .. holder
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[5])
return 1
"""

_TAKEOVER_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class Claims(Protocol):
    def claim(self, job_id: str, attempt: int, worker: str) -> bool | str: ...

    def take_over(self, job_id: str, attempt: int, dead_worker: str, worker: str) -> bool: ...

    def release(self, job_id: str) -> None: ...


class RedisClaims:
    def __init__(self, broker: Any, ttl_seconds: int) -> None:
        self.client = broker.client
        self.heartbeats = f"{broker.namespace}:__heartbeats__"
        self.timeout = broker.heartbeat_timeout
        self.prefix = f"{broker.namespace}:buzzer:claim:"
        self.ttl = ttl_seconds
        self._claim = self.client.register_script(_CLAIM_SCRIPT)
        self._take_over = self.client.register_script(_TAKEOVER_SCRIPT)

    def claim(self, job_id: str, attempt: int, worker: str) -> bool | str:
        """True when this delivery may run; "dead:<worker>" when the holder is dead."""
        key = self.prefix + job_id
        if attempt == 1 and self.client.set(key, f"1|{worker}", nx=True, ex=self.ttl):
            return True
        result = self._claim(
            keys=[key, self.heartbeats], args=[attempt, worker, int(time.time() * 1000), self.timeout, self.ttl]
        )
        if isinstance(result, bytes):
            return result.decode()
        return bool(result)

    def take_over(self, job_id: str, attempt: int, dead_worker: str, worker: str) -> bool:
        return bool(
            self._take_over(
                keys=[self.prefix + job_id], args=[f"{attempt}|{dead_worker}", f"{attempt}|{worker}", self.ttl]
            )
        )

    def release(self, job_id: str) -> None:
        """Forget a job's claims (it is being re-sent from the dead-letter queue)."""
        self.client.delete(self.prefix + job_id)


class MemoryClaims:
    """Claims for the stub broker (one process, no heartbeats: every holder is alive)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def claim(self, job_id: str, attempt: int, worker: str) -> bool | str:
        with self._lock:
            held = self._held.get(job_id)
            if held is not None and held[0] >= attempt:
                return False
            self._held[job_id] = (attempt, worker)
            return True

    def take_over(self, job_id: str, attempt: int, dead_worker: str, worker: str) -> bool:
        with self._lock:
            if self._held.get(job_id) != (attempt, dead_worker):
                return False
            self._held[job_id] = (attempt, worker)
            return True

    def release(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)


def claims_for(broker: Any) -> Claims:
    from django.conf import settings

    if getattr(broker, "client", None) is not None:
        return RedisClaims(broker, settings.BUZZER_CLAIM_TTL_SECONDS)
    store = getattr(broker, "_buzzer_claims", None)
    if store is None:
        store = broker._buzzer_claims = MemoryClaims()
    return store
