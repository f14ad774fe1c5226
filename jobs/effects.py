"""The effects ledger: do a side effect at most once per key, however often the job
that does it runs.

Two kinds of effects:

- In the database (a stock decrement): `once(key)` writes the ledger row in the same
  transaction as the effect, so it happens exactly once; a block that raises leaves no
  row and can run again.
- Outside (an email, a webhook): `once(key, external=True)` records the key as started
  in a short transaction of its own, runs the block outside any transaction (no database
  lock is held while the mail server thinks — on SQLite that lock would stop every
  writer), then marks it done. A block that raises frees the key for the next try. If
  the worker died in the middle, the next delivery of the same job takes the key over
  and does the effect again. To keep that window to the instant between the effect and
  a Redis write (rather than a database commit, which waits for the write lock under
  load), the end of the block is first marked in Redis, and a take-over that finds the
  mark only records the effect as done. What remains — a worker killed between the mail
  server's answer and that mark, milliseconds that grow with the threads waiting for
  the GIL — is an effect whose outcome is unknown. `check`, when given, settles it: a
  take-over asks it (did the mail server accept this Message-ID? did the receiver
  record this event id?) and a True answer records the effect as done instead of doing
  it again. Without a check (plain SMTP cannot answer), the effect is done again, and
  emails carry a stable Message-ID so that mail systems can drop the copy.

  Only one delivery at a time may be inside the block of an external effect: it holds a
  lease in Redis for the effect's key, naming its worker process. Two deliveries of one
  job can run at once (a retry sent while a delivery thought dead was still running, a
  re-send of a job whose message looked lost), and without the lease the second would
  take the first one's "started" row over while the first is still talking to the mail
  server. A delivery that finds the lease held by a live worker raises EffectInProgress
  (the job waits and runs again, using no retry); a lease whose worker stopped beating
  is taken over. A lease that names a live worker but no block in it (an acquire whose
  answer was lost in a Redis stall although Redis ran it, a release that failed) is
  freed by that worker's next lease operation, and taken over by that worker at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
from django.db import IntegrityError, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)
_current = threading.local()


class EffectInProgress(dramatiq.Retry):
    """Another job is doing this external effect right now (or a webhook endpoint has
    all its deliveries in flight): try again later.

    Flow control, not an error: as a `dramatiq.Retry`, Dramatiq's worker does not log it
    as an unhandled exception with a traceback; the wait is one line of the Retries
    middleware. `delay_ms`, when the raiser knows better than the doubling backoff how
    long the wait will be (a webhook endpoint whose requests time out), is the wait to use."""

    def __init__(self, message: str = "", delay_ms: int | None = None) -> None:
        super().__init__(message, delay=delay_ms)
        self.delay_ms = delay_ms


def set_current_job(job_id: Any, generation: int = 0, attempt: int = 1) -> None:
    """Called by the tracking middleware around each job the worker thread runs."""
    _current.job_id = job_id
    _current.generation = generation
    _current.attempt = attempt


def current_attempt() -> int | None:
    """The attempt number of the job this thread runs (1 = its first), or None."""
    return getattr(_current, "attempt", None) if current_job() is not None else None


def current_job() -> Any:
    return getattr(_current, "job_id", None)


def current_job_key() -> str | None:
    """The claim key of the job this thread runs (its id and generation), or None."""
    job_id = current_job()
    return None if job_id is None else f"{job_id}:{getattr(_current, 'generation', 0)}"


@contextmanager
def once(key: str, *, external: bool = False, check: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Yield True the first time `key` is seen (the block should do the effect), False
    once it is done. Keys name the effect and its object, e.g.
    ``email:order-confirmation:<order id>``. `check` (external effects only) answers
    whether an effect whose delivery died mid-block happened after all."""
    from jobs.models import Effect

    if not external:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    Effect.objects.create(key=key)
            except IntegrityError:
                yield False
                return
            yield True
        return

    lease = Lease.for_key(key)
    if lease is not None:
        lease.acquire()
    try:
        if not _start(key, lease is not None, check):
            yield False
            return
        _lend_connection_back()
        try:
            yield True
        except BaseException:
            Effect.objects.filter(key=key, state=Effect.State.STARTED).delete()
            raise
        _mark_done(key)
        Effect.objects.filter(key=key).update(state=Effect.State.DONE, updated_at=timezone.now())
    finally:
        if lease is not None:
            lease.release()


def _lend_connection_back() -> None:
    """Return this thread's database connection to the pool while the mail server (or
    the webhook receiver) thinks: a slow receiver must not hold one of the process's few
    connections. The next query borrows one again."""
    from django.db import connection

    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


# KEYS: the lease, the heartbeats sorted set. ARGV: holder ("<worker>|<token>"), now ms,
# dead-after ms, ttl s. Returns 1 when taken, else the live holder.
_LEASE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  local worker = string.sub(current, 1, string.find(current, '|', 1, true) - 1)
  local beat = redis.call('ZSCORE', KEYS[2], worker)
  if beat and tonumber(ARGV[2]) - tonumber(beat) < tonumber(ARGV[3]) then return current end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
return 1
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: a key. ARGV: the value expected, the new value, ttl s. Returns 1 when set (a
# lease taken over here; a claim released in jobs.claims).
COMPARE_AND_SET_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

# The holders whose blocks run in this process right now, and the leases it may have left
# behind: an acquire whose answer was lost (Redis stalled past the socket timeout, then
# ran the script) or a release that failed. Such a lease names this process, which beats,
# so no other process takes it over; this process frees it on its next lease operation or
# heartbeat, and takes it over itself when it is the one that wants it.
_leases_lock = threading.Lock()
_held_here: set[str] = set()
_left_behind: dict[str, str] = {}


class Lease:
    """Who may be inside an external effect's block right now (see the module's text)."""

    def __init__(self, broker: Any, key: str) -> None:
        import uuid

        from django.conf import settings

        self.client = broker.client
        self.key = f"{broker.namespace}:buzzer:effect-lease:{key}"
        self.heartbeats = f"{broker.namespace}:__heartbeats__"
        self.holder = f"{broker.broker_id}|{uuid.uuid4().hex}"
        self.dead_after_ms = int(settings.BUZZER_WORKER_DEAD_AFTER_SECONDS * 1000)
        # Outlives any job's time limit: a lease is only ever left behind by a dead worker.
        self.ttl = max(3600, settings.BUZZER_TIME_LIMIT_MS // 1000 * 2)

    @classmethod
    def for_key(cls, key: str) -> Lease | None:
        import dramatiq

        broker = dramatiq.get_broker()
        return cls(broker, key) if getattr(broker, "client", None) is not None else None

    def acquire(self) -> None:
        import time

        self._free_left_behind()
        with _leases_lock:  # before the script: a lease of this process is never stale
            _held_here.add(self.holder)
        try:
            taken = self.client.register_script(_LEASE_SCRIPT)(
                keys=[self.key, self.heartbeats],
                args=[self.holder, int(time.time() * 1000), self.dead_after_ms, self.ttl],
            )
            if taken != 1:
                held = taken.decode() if isinstance(taken, bytes) else str(taken)
                if not self._take_over_own(held):
                    raise EffectInProgress(f"{self.key} is held by {held.split('|')[0]}")
        except EffectInProgress:
            with _leases_lock:
                _held_here.discard(self.holder)
            raise
        except Exception:
            # Redis may have run the script after the client stopped waiting for it.
            self._leave_behind()
            raise

    def _take_over_own(self, held: str) -> bool:
        """Take over a lease that names this process but no block running in it (one an
        acquire or release left behind). Another process's lease is never taken here."""
        worker, _, _token = held.partition("|")
        with _leases_lock:
            stale = worker == self.holder.partition("|")[0] and held not in _held_here
        if not stale:
            return False
        taken = self.client.register_script(COMPARE_AND_SET_SCRIPT)(keys=[self.key], args=[held, self.holder, self.ttl])
        if taken == 1:
            logger.info("Took over %s, which this worker process had left behind", self.key)
        return taken == 1

    def release(self) -> None:
        with _leases_lock:
            _held_here.discard(self.holder)
        try:
            self.client.register_script(_RELEASE_SCRIPT)(keys=[self.key], args=[self.holder])
        except Exception:  # freed on this process's next lease operation, or it expires
            logger.warning("Could not release %s", self.key, exc_info=True)
            self._leave_behind()

    def _leave_behind(self) -> None:
        with _leases_lock:
            _held_here.discard(self.holder)
            _left_behind[self.key] = self.holder
        try:
            self.client.register_script(_RELEASE_SCRIPT)(keys=[self.key], args=[self.holder])
        except Exception:  # noqa: BLE001 - freed on a later lease operation
            return
        with _leases_lock:
            if _left_behind.get(self.key) == self.holder:
                del _left_behind[self.key]

    def _free_left_behind(self) -> None:
        free_left_behind(self.client)


def free_left_behind(client: Any) -> None:
    """Free the leases this process left behind (see `_left_behind`); called before each
    lease is taken and by the worker's heartbeat thread, so that an idle worker frees
    them too."""
    with _leases_lock:
        pending = list(_left_behind.items())
    for key, holder in pending:
        try:
            client.register_script(_RELEASE_SCRIPT)(keys=[key], args=[holder])
        except Exception:  # noqa: BLE001 - Redis still unwell: next time
            return
        with _leases_lock:
            if _left_behind.get(key) == holder:
                del _left_behind[key]


def _marks() -> tuple[Any, str] | None:
    """The broker's Redis client and the prefix of the done marks (None without Redis)."""
    import dramatiq

    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    return (client, f"{broker.namespace}:buzzer:effect-done:") if client is not None else None


def _mark_done(key: str) -> None:
    from django.conf import settings

    marks = _marks()
    if marks is None:
        return
    client, prefix = marks
    try:
        client.set(prefix + key, 1, ex=settings.BUZZER_CLAIM_TTL_SECONDS)
    except Exception:
        logger.warning("Could not mark effect %s done in Redis", key, exc_info=True)


def _marked_done(key: str) -> bool:
    marks = _marks()
    if marks is None:
        return False
    client, prefix = marks
    try:
        return bool(client.exists(prefix + key))
    except Exception:  # noqa: BLE001 - unknown: do it again, as without the mark
        return False


def _start(key: str, leased: bool = False, check: Callable[[], bool] | None = None) -> bool:
    """Record an external effect as started; False when it is already done.

    With the lease held (`leased`), no other delivery is inside this effect's block, so
    a "started" row is a dead or failed delivery's, whatever job wrote it."""
    from jobs.models import Effect

    job_id = current_job()
    for _ in range(3):
        try:
            with transaction.atomic():
                Effect.objects.create(key=key, state=Effect.State.STARTED, job_id=job_id)
            return True
        except IntegrityError:
            existing = Effect.objects.filter(key=key).first()
        if existing is None:
            continue  # freed by a failed try in between: start again
        if existing.state == Effect.State.DONE:
            return False
        if leased or (job_id is not None and existing.job_id == job_id):
            # A delivery started it and died or failed on the way. If it got as far as the
            # mark in Redis, or the receiver says it has the effect, it happened: record it.
            # Otherwise take it over. (A check that raises leaves the row as it is: the
            # job runs again later and asks again.)
            if _marked_done(key) or (check is not None and check()):
                logger.info("Effect %s was found done after its delivery stopped mid-way", key)
                Effect.objects.filter(pk=existing.pk).update(state=Effect.State.DONE, updated_at=timezone.now())
                return False
            Effect.objects.filter(pk=existing.pk).update(job_id=job_id, updated_at=timezone.now())
            return True
        raise EffectInProgress(f"{key} is being done by job {existing.job_id}")
    raise EffectInProgress(f"{key} keeps changing hands")


def message_id(key: str) -> str:
    """The Message-ID of the email an effect key sends: the same on every delivery."""
    import hashlib

    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@buzzer>"


def email_accepted(message_id: str) -> bool:
    """Whether the configured email backend says it has accepted a message with this
    Message-ID: a `check` for `once`. A backend over a provider's API can answer, through
    a method ``accepted(message_id) -> bool``; SMTP cannot, and the answer is False (not
    known to have happened, so the email is sent again, with the same Message-ID)."""
    from django.core.mail import get_connection

    probe = getattr(get_connection(), "accepted", None)
    return bool(probe(message_id)) if callable(probe) else False


def happened(key: str) -> bool:
    from jobs.models import Effect

    return Effect.objects.filter(key=key, state=Effect.State.DONE).exists()
