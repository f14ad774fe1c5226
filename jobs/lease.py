"""One active scheduler: a lease in Redis.

APScheduler 3 cannot share a job store between processes (two processes sharing a Redis
job store fired every job twice here), so only the holder of this lease schedules
anything; a second `runscheduler` waits as a hot standby and takes over within
`BUZZER_SCHEDULER_LEASE_SECONDS` of the holder's death (at once when it stops cleanly).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, client: Any, key: str, ttl_seconds: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.holder, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours."""
        return bool(self._renew(keys=[self.key], args=[self.holder, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.holder])

    def current_holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value else None
