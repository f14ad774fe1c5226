"""The jobs API: write jobs in the caller's transaction (the outbox), dispatch them to
the broker after commit, and sweep up whatever a crash or a Redis outage left behind."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import redis
from django.conf import settings
from django.db import DatabaseError, connections, models, router, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import logging as _logging
from jobs import redis_client
from jobs.broker import add_nudges
from jobs.events import subscribers
from jobs.models import Job
from jobs.prepared import PreparedInsert

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
# After a send to Redis failed, sends after commit skip Redis for this long (the jobs wait
# in the outbox for the sweep, which always tries): an order with three jobs would
# otherwise wait out the dispatch timeout three times, and every request after it too.
_redis_refused_until = 0.0


def _actor_name(actor: Any) -> str:
    return actor if isinstance(actor, str) else actor.actor_name


def _object_ref(obj: models.Model | None) -> tuple[str, str]:
    if obj is None:
        return "", ""
    return obj._meta.label_lower, str(obj.pk)


def enqueue(
    actor: Any,
    *args: Any,
    key: str | None = None,
    queue: str | None = None,
    obj: models.Model | None = None,
    event: str = "",
    options: dict[str, Any] | None = None,
    delay: timedelta | float | None = None,
    eta: datetime | None = None,
    **kwargs: Any,
) -> Job:
    """Write a job for `actor` and dispatch it once the current transaction commits.

    Arguments must be JSON values (ids, not model instances). With `key`, asking twice
    for the same job returns the first one instead of writing a second. `options` are
    Dramatiq message options for this job only (e.g. `max_retries`, `min_backoff`).
    Outside a transaction the job is dispatched at once.

    `delay` (a timedelta or seconds) or `eta` (an aware datetime) make it a delayed job:
    it is written `scheduled` with its due time and handed to the broker at that time by
    the scheduler (`release_due`), so it runs once, not before, and Redis losing its
    contents meanwhile loses nothing.
    """
    job = _new_job(
        actor, args, kwargs, key=key, queue=queue, obj=obj, event=event, options=options, due_at=_due_at(delay, eta)
    )
    return _write([job])[0]


def _new_job(
    actor: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    key: str | None,
    queue: str | None,
    obj: models.Model | None,
    event: str,
    options: dict[str, Any] | None,
    due_at: datetime | None,
) -> Job:
    """The unsaved row of one job."""
    name = _actor_name(actor)
    options = dict(options or {})
    request_id = _logging.bound().get("request_id")
    if request_id and "buzzer_request_id" not in options:
        options["buzzer_request_id"] = request_id  # the request's id follows its jobs into the logs
    broker_actor = dramatiq.get_broker().get_actor(name)  # fails fast on a typo
    object_type, object_id = _object_ref(obj)
    job = Job(
        actor_name=name,
        queue_name=queue or broker_actor.queue_name,
        args=list(args),
        kwargs=kwargs,
        event=event,
        object_type=object_type,
        object_id=object_id,
        options=options,
        key=key,
    )
    if due_at is not None:
        job.status, job.due_at = Job.Status.SCHEDULED, due_at
    return job


def _write(new: list[Job]) -> list[Job]:
    """Insert the jobs in one statement and dispatch those due now after COMMIT (one
    callback, one Redis round trip for all of them). A job whose key is taken is not
    written: the existing job takes its place in the result (and is not dispatched)."""
    return PreparedJobs(new).write()


class PreparedJobs:
    """Jobs whose INSERT is built now and sent by `write()`, in the transaction that
    must hold them: a caller that builds it before opening its transaction (an order)
    holds SQLite's write lock only while the statement runs."""

    def __init__(self, new: list[Job]) -> None:
        self.new = new
        connection = transaction.get_connection(router.db_for_write(Job))
        # Before SQLite 3.35 there is no RETURNING: `write` takes the slow way.
        self.insert = None
        if new and connection.features.can_return_rows_from_bulk_insert:
            self.insert = PreparedInsert(Job, new, on_conflict=OnConflict.IGNORE, returning_pk=True)

    def write(self) -> list[Job]:
        new = self.new
        if not new:
            return []
        inserted = _insert_new(new, self.insert)
        result = list(new)
        taken = [i for i, job in enumerate(new) if job.pk not in inserted]
        if taken:
            existing = Job.objects.in_bulk([new[i].key for i in taken], field_name="key")
            for i in taken:
                job = new[i]
                # Gone again since the INSERT (deleted meanwhile): write it the slow way.
                result[i] = existing.get(job.key) or Job.objects.get_or_create(key=job.key, defaults=_fields(job))[0]
        due = [job for job in result if job.pk in inserted and job.status == Job.Status.PENDING]
        if due:
            _dispatch_on_commit(due)
        return result


def _fields(job: Job) -> dict[str, Any]:
    return {f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields if f.attname not in ("id", "key")}


def _insert_new(new: list[Job], insert: PreparedInsert | None) -> set[Any]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the ids of the rows written (a job
    whose key exists is skipped, never an error, so no savepoint is needed)."""
    if insert is None:  # SQLite before 3.35
        written = set()
        for job in new:
            if job.key is None:
                job.save(force_insert=True)
                written.add(job.pk)
            else:
                if Job.objects.get_or_create(key=job.key, defaults={**_fields(job), "id": job.id})[1]:
                    written.add(job.pk)
        return written
    to_python = Job._meta.pk.to_python
    return {to_python(row[0]) for row in insert.run()}


class _DispatchAfterCommit:
    """One on_commit callback for the jobs written at one savepoint level: they are sent
    together. Jobs written inside a savepoint get a callback of their own, which Django
    drops if that savepoint is rolled back, so a rolled-back job is never sent."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def __call__(self) -> None:
        dispatch(self.jobs)  # looked up when called: tests and the fault suite replace it


def _dispatch_on_commit(jobs: list[Job]) -> None:
    connection = transaction.get_connection(router.db_for_write(Job))
    if not connection.in_atomic_block:
        dispatch(jobs)
        return
    pending = connection.run_on_commit
    if pending and isinstance(pending[-1][1], _DispatchAfterCommit) and pending[-1][0] == set(connection.savepoint_ids):
        pending[-1][1].jobs.extend(jobs)  # the same savepoint level: the same batch
    else:
        transaction.on_commit(_DispatchAfterCommit(jobs), using=connection.alias)


def _due_at(delay: timedelta | float | None, eta: datetime | None) -> datetime | None:
    if delay is not None and eta is not None:
        raise ValueError("Give a delay or an eta, not both.")
    if eta is not None:
        if timezone.is_naive(eta):
            raise ValueError("eta must be an aware datetime (e.g. timezone.now() + timedelta(hours=1)).")
        return eta if eta > timezone.now() else None
    if delay is None:
        return None
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if seconds < 0:
        raise ValueError("delay must not be negative.")
    return timezone.now() + timedelta(seconds=seconds) if seconds > 0 else None


def release_due(limit: int = SWEEP_BATCH) -> int:
    """Hand delayed jobs whose time has come to the broker (the scheduler calls this
    several times a second). Each is moved `scheduled` → `pending` by a conditional
    update, so two callers never send one job twice; what Redis refuses stays pending
    for the outbox sweep. Returns how many were released."""
    now = timezone.now()
    total = 0
    while True:
        ids = list(
            Job.objects.filter(status=Job.Status.SCHEDULED, due_at__lte=now)
            .order_by("due_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return total
        mine = []
        for pk in ids:  # one winner per job, whoever else releases at the same time
            if Job.objects.filter(pk=pk, status=Job.Status.SCHEDULED).update(status=Job.Status.PENDING):
                mine.append(pk)
        if mine:
            dispatch(Job.objects.filter(pk__in=mine, status=Job.Status.PENDING).order_by("due_at"), force=True)
        total += len(mine)
        if len(ids) < limit:
            return total


def next_due() -> datetime | None:
    """When the next delayed job is due (None: none is waiting)."""
    return Job.objects.filter(status=Job.Status.SCHEDULED).order_by("due_at").values_list("due_at", flat=True).first()


def publish(event: str, *, obj: models.Model | None = None, queue: str | None = None, **payload: Any) -> list[Job]:
    """Write one job per subscriber of `event`, with the payload as keyword arguments.

    Each job has a key made of the event, the subscriber and the object, so publishing
    the same event for the same object twice writes no second set of jobs. All of them
    are written with one INSERT and sent to the broker together after COMMIT.

    `queue` replaces the default queue only: a subscriber declared on a queue of its own
    (webhook deliveries on `webhooks`) stays there, since that queue is what isolates it.
    """
    return prepare_publish(event, obj=obj, queue=queue, **payload).write()


def prepare_publish(
    event: str, *, obj: models.Model | None = None, queue: str | None = None, **payload: Any
) -> PreparedJobs:
    """`publish` in two steps: the jobs and their INSERT are built now, and written (and
    dispatched after COMMIT) by `.write()` inside the caller's transaction. `obj` needs
    its primary key already (a UUID default, not one the INSERT assigns)."""
    new = []
    broker = dramatiq.get_broker()
    for name in subscribers(event):
        key = None
        if obj is not None:
            key = f"{event}:{name}:{obj._meta.label_lower}:{obj.pk}"
        own_queue = broker.get_actor(name).queue_name != "default"
        new.append(
            _new_job(
                name,
                (),
                dict(payload),
                key=key,
                queue=None if own_queue else queue,
                obj=obj,
                event=event,
                options=None,
                due_at=None,
            )
        )
    return PreparedJobs(new)


def send_without_outbox(actor: Any, *args: Any, delay_ms: int = 0, **kwargs: Any) -> bool:
    """Send a job straight to Redis, with no Job row first: only for work that must be
    scheduled while the database cannot be written (the row is written when the job
    starts). False when Redis refused it too."""
    broker_actor = dramatiq.get_broker().get_actor(_actor_name(actor))
    message = broker_actor.message(*args, **kwargs)
    try:
        sender().enqueue(message, delay=delay_ms or None)
    except Exception:  # Redis down as well: the caller decides what to do instead
        logger.warning("Could not send %s without the outbox", message.actor_name, exc_info=True)
        return False
    return True


def build_message(job: Job, **options: Any) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name=job.queue_name,
        actor_name=job.actor_name,
        args=tuple(job.args),
        kwargs=dict(job.kwargs),
        options={**job.options, **options},
        message_id=str(job.id),
        message_timestamp=int(time.time() * 1000),
    )


_senders: dict[int, dramatiq.Broker] = {}


def sender() -> dramatiq.Broker:
    """The broker to send through: the configured one, but for Redis a twin whose socket
    gives up after BUZZER_DISPATCH_TIMEOUT_SECONDS, so that a stalled Redis cannot hold a
    request (or the sweep) for long; what it refuses waits in the outbox."""
    broker = dramatiq.get_broker()
    if not isinstance(broker, RedisBroker):
        return broker
    twin = _senders.get(id(broker))
    if twin is None:
        timeout = settings.BUZZER_DISPATCH_TIMEOUT_SECONDS
        # One try: redis-py would otherwise try a timed-out command again, doubling the wait.
        params = dict(socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        params.update(retry_on_timeout=False, retry_on_error=[])
        # The same server as the broker's: with Sentinel, a pool that follows the master too.
        pool = redis_client.pool_like(broker.client.connection_pool, **params)
        client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        twin = RedisBroker(client=client, namespace=broker.namespace, middleware=[])
        _senders.clear()  # tests swap brokers: keep only the current one's twin
        _senders[id(broker)] = twin
    return twin


def dispatch(jobs: Iterable[Job], *, force: bool = False, mark_now: bool = False) -> int:
    """Send pending jobs to the broker and mark them enqueued. Returns how many were sent.

    On Redis all of them go in one pipeline (one round trip) and are marked with one
    UPDATE. After a commit (not `force`) that UPDATE is left to this process's marker
    thread (`BUZZER_MARK_ENQUEUED_IN_BACKGROUND`): the request that placed an order
    ends without a second write transaction, and the marks of concurrent requests share
    one (`mark_now`: in this call, for an operator's action, whose next page must show
    the job enqueued). A job the broker refuses (Redis down or stalled) stays pending for the sweep;
    the caller is never failed for it, and for BUZZER_DISPATCH_BACKOFF_SECONDS after such
    a refusal this process leaves new jobs to the sweep without trying (`force` tries
    anyway: the sweep). A job sent twice (this and the sweep racing) is run once: the
    tracking middleware skips a job that is not waiting.
    """
    global _redis_refused_until
    if not force and time.monotonic() < _redis_refused_until:
        return 0
    jobs = list(jobs)
    if not jobs:
        return 0
    broker = sender()
    try:
        if isinstance(broker, RedisBroker):
            sent = _send_pipelined(broker, jobs)
        else:
            sent = _send_one_by_one(broker, jobs)
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves them to the sweep
        logger.warning("Could not dispatch %d jobs (%s…); the sweep will retry: %s", len(jobs), jobs[0].id, exc)
        sent = []
    if len(sent) < len(jobs):
        _redis_refused_until = time.monotonic() + settings.BUZZER_DISPATCH_BACKOFF_SECONDS
    if sent:
        # Only committed rows can be marked from the thread's own connection: inside a
        # transaction (a caller's, still open) they are marked on the caller's.
        in_transaction = transaction.get_connection(router.db_for_write(Job)).in_atomic_block
        if not (force or mark_now or in_transaction) and settings.BUZZER_MARK_ENQUEUED_IN_BACKGROUND:
            _marker.add(sent)
        else:
            _mark_enqueued(sent)
    return len(sent)


class _EnqueuedMarker:
    """Marks sent jobs enqueued from a thread of its own, a batch at a time: whatever the
    requests of this process sent while the last UPDATE ran goes in the next one.

    Nothing depends on the mark but the sweep, which sends a job again only once it has
    stayed pending for BUZZER_SWEEP_AFTER_SECONDS; the marks land within milliseconds.
    A process that dies with marks not written leaves those jobs pending, exactly as a
    failed UPDATE does: the sweep sends them a second time and the claim runs each once.
    The thread starts at the first mark in each process (a fork, as gunicorn's workers
    are, gets a thread of its own), holds its database connection only while marks keep
    coming (it closes it after LINGER_SECONDS without any), and what is waiting at exit
    is written then."""

    LINGER_SECONDS = 1.0

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._ids: list[Any] = []
        self._writing = 0  # ids in the UPDATE now running
        self._close_asked = False
        self._pid = 0

    def add(self, ids: list[Any]) -> None:
        with self._changed:
            if self._pid != os.getpid():  # first use in this process
                self._pid = os.getpid()
                self._ids, self._writing, self._close_asked = [], 0, False
                threading.Thread(target=self._run, name="buzzer-enqueued-marker", daemon=True).start()
            self._ids.extend(ids)
            self._changed.notify_all()

    def flush(self, timeout: float = 10.0, *, close: bool = False) -> bool:
        """Wait until every mark added so far is written (or given up); with `close`, also
        until the thread has closed its database connection. False on timeout."""
        with self._changed:
            if self._pid != os.getpid():
                return True  # no thread in this process
            if close:
                self._close_asked = True
                self._changed.notify_all()
            return self._changed.wait_for(
                lambda: not self._ids and not self._writing and not self._close_asked, timeout
            )

    def _run(self) -> None:
        connection = connections[router.db_for_write(Job)]
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: self._ids or self._close_asked, self.LINGER_SECONDS):
                    self._close_asked = True  # idle: let the connection go
                batch, self._ids = self._ids, []
                self._writing = len(batch)
                close = self._close_asked and not batch
            try:
                if batch:
                    _mark_enqueued(batch)
                    # As after a request: a broken connection, or one past CONN_MAX_AGE
                    # (with a pool: each time, handing it back) is closed.
                    connection.close_if_unusable_or_obsolete()
                elif close:
                    connection.close()
            except Exception:  # the thread must live on; the sweep sends those jobs again
                logger.exception("Could not mark %d sent jobs enqueued; the sweep will", len(batch))
            finally:
                with self._changed:
                    self._writing = 0
                    if close:
                        self._close_asked = False
                    self._changed.notify_all()
            if close:
                with self._changed:
                    self._changed.wait_for(lambda: self._ids or self._close_asked)

    def write_now(self, wait: float = 5.0) -> None:
        """At exit: wait briefly for the thread, then write what is still waiting in the
        exiting thread (the marker may be blocked)."""
        self.flush(wait)
        with self._changed:
            batch, self._ids = self._ids, []
        if batch:
            _mark_enqueued(batch)


_marker = _EnqueuedMarker()
atexit.register(_marker.write_now)


def flush_marks(timeout: float = 10.0, *, close: bool = False) -> bool:
    """Wait for this process's marker thread to write the marks added so far (tests,
    and code that reads a job's status right after placing it); with `close`, also for it
    to close its database connection (before a test database is dropped)."""
    return _marker.flush(timeout, close=close)


def _mark_enqueued(ids: list[Any]) -> None:
    """pending → enqueued for the jobs just sent, in one UPDATE. On PostgreSQL a row that
    another transaction holds (a worker's writer moving it on, the sweep marking it) is
    skipped rather than waited for: two multi-row UPDATEs locking in different orders
    deadlock. A failure leaves the jobs pending for the sweep (a second delivery, which
    the claim skips) and never fails the caller: after COMMIT the order stands."""
    try:
        connection = transaction.get_connection(router.db_for_write(Job))
        if connection.vendor != "postgresql":
            Job.objects.filter(id__in=ids, status=Job.Status.PENDING).update(
                status=Job.Status.ENQUEUED, enqueued_at=timezone.now()
            )
            return
        table = connection.ops.quote_name(Job._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET status = %s, enqueued_at = %s WHERE id IN "  # noqa: S608 - our own table name
                f"(SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s FOR UPDATE SKIP LOCKED)",
                [Job.Status.ENQUEUED, timezone.now(), list(ids), Job.Status.PENDING],
            )
    except DatabaseError as exc:
        logger.warning("Could not mark %d sent jobs enqueued (%s…); the sweep will: %s", len(ids), ids[0], exc)


def _send_one_by_one(broker: dramatiq.Broker, jobs: list[Job]) -> list[Any]:
    sent = []
    for job in jobs:
        try:
            broker.enqueue(build_message(job))
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves it to the sweep
            logger.warning("Could not dispatch job %s (%s); the sweep will retry: %s", job.id, job.actor_name, exc)
            break
        sent.append(job.id)
    return sent


def _send_pipelined(broker: RedisBroker, jobs: list[Job]) -> list[Any]:
    """What RedisBroker.enqueue does for each message (Dramatiq's own dispatch script,
    a fresh redis_message_id), for all of them in one pipeline: one round trip. The
    script is called by its SHA alone (redis-py would ask SCRIPT EXISTS first, a second
    round trip); a server that does not know it yet (restarted) gets it loaded and the
    refused messages again. Returns the ids of the jobs Redis accepted."""
    script = broker.scripts["dispatch"]
    unpack = broker._max_unpack_size()  # read from Redis once per process
    waiting = []
    for job in jobs:
        message = build_message(job, redis_message_id=str(uuid.uuid4()))
        broker.emit_before("enqueue", message, None)
        waiting.append((job, message))
    sent: list[Any] = []
    for _attempt in range(2):
        pipe = broker.client.pipeline(transaction=False)
        timestamp = current_millis()
        for _job, message in waiting:
            pipe.evalsha(
                script.sha,
                1,
                broker.namespace,
                "enqueue",
                timestamp,
                message.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                broker._should_do_maintenance("enqueue"),
                unpack,
                message.options["redis_message_id"],
                message.encode(),
            )
        if settings.BUZZER_WORKER_WAKEUP:  # the idle consumers' nudges ride in the same round trip
            add_nudges(pipe, broker.namespace, [message.queue_name for _job, message in waiting])
        results = pipe.execute(raise_on_error=False)[: len(waiting)]
        unknown_script = []
        for (job, message), result in zip(waiting, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                unknown_script.append((job, message))
            elif isinstance(result, Exception):
                logger.warning(
                    "Could not dispatch job %s (%s); the sweep will retry: %s", job.id, job.actor_name, result
                )
            else:
                broker.emit_after("enqueue", message, None)
                sent.append(job.id)
        if not unknown_script:
            break
        script.sha = broker.client.script_load(script.script)
        waiting = unknown_script
    return sent


def sweep_outbox(older_than: float | None = None, limit: int = SWEEP_BATCH) -> int:
    """Dispatch jobs that stayed pending: their process died between COMMIT and the
    send, or Redis was down. Returns how many were sent."""
    if older_than is None:
        older_than = settings.BUZZER_SWEEP_AFTER_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than)
    total = 0
    while True:
        batch = list(
            Job.objects.filter(status=Job.Status.PENDING, created_at__lte=cutoff).order_by("created_at")[:limit]
        )
        if not batch:
            break
        sent = dispatch(batch, force=True)
        total += sent
        if sent < len(batch):
            break
    if total:
        logger.info("Outbox sweep dispatched %d jobs", total)
    return total


def jobs_for(obj: models.Model) -> models.QuerySet[Job]:
    object_type, object_id = _object_ref(obj)
    return Job.objects.filter(object_type=object_type, object_id=object_id).order_by("created_at")
