"""Batched job state writes: one thread per worker process writes what its worker
threads report (job started, job finished) in few short transactions.

Worker threads never wait for it: whether a delivery may run is decided by its claim in
Redis (`jobs.claims`). A start and a finish of the same attempt that meet in one batch
become a single UPDATE, so a short job costs one row write. Each write is guarded by the
attempt number, so a late report never overwrites a newer attempt.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction

from jobs.fingerprints import fingerprint

logger = logging.getLogger(__name__)

BATCH_LIMIT = 1000
# A wait (an attempt that met an unavailable database and runs again under the same
# number) never overwrites a final state: its report can reach the database after the
# outcome of the delivery that ran next, written by another process's writer. And a
# failed attempt of a job cancelled while it ran leaves it cancelled (no retry runs).
NOT_OVER_FINAL = "(%s OR status NOT IN ('succeeded', 'dead')) AND (status <> 'cancelled' OR %s = 'dead')"
SHUTDOWN_SECONDS = 15.0
GATHER_SECONDS = 0.01


@dataclass
class Started:
    job_id: uuid.UUID
    attempt: int
    worker: str
    at: datetime
    actor_name: str
    queue_name: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass
class Finished:
    job_id: uuid.UUID
    attempt: int
    status: str
    at: datetime
    error: str = ""
    traceback: str = ""
    actor_name: str = ""
    queue_name: str = ""
    worker: str = ""
    started_at: datetime | None = None
    broker_message_id: str = ""  # Redis' id of a delivery that went to the dead-letter set
    counted: bool = True  # False: the attempt waits for the database or Redis and runs again
    generation: int = 0  # of a dead job: its dead hooks run once per generation
    enqueued_ms: int = 0  # when its message became ready to run, epoch ms (jobs.waits); 0 unknown
    next_at: datetime | None = None  # a retrying job: when its next attempt is due

    @property
    def duration(self) -> float | None:
        return (self.at - self.started_at).total_seconds() if self.started_at else None


@dataclass
class Barrier:
    done: threading.Event = field(default_factory=threading.Event)


class JobWriter:
    def __init__(self, on_written: Callable[[list[Finished]], None] | None = None) -> None:
        """`on_written` gets every batch's finishes after they are committed (metrics)."""
        self._on_written = on_written
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="buzzer-job-writer", daemon=True)
        self._thread.start()

    def started(self, event: Started) -> None:
        self._events.put(event)

    def finished(self, event: Finished) -> None:
        self._events.put(event)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything reported before this call is committed."""
        barrier = Barrier()
        self._events.put(barrier)
        return barrier.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(min(timeout, 5.0))  # the writer goes on trying for SHUTDOWN_SECONDS after this
        self._events.put(None)
        self._thread.join(timeout)

    # --- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        pending: list[Started | Finished] = []
        barriers: list[Barrier] = []
        stopping = False
        stopping_since = 0.0
        failures = 0
        while True:
            batch: list[Any] = []
            try:
                # With writes still pending (the database refused them), wake up to retry.
                batch.append(self._events.get(timeout=0.5 if pending else None))
                # Let a batch gather for a few milliseconds: fewer, larger transactions
                # (the row may lag the truth by that much; claims live in Redis anyway).
                time.sleep(GATHER_SECONDS)
                while len(batch) < BATCH_LIMIT:
                    batch.append(self._events.get_nowait())
            except queue.Empty:
                pass
            if not stopping and any(e is None for e in batch):
                stopping, stopping_since = True, time.monotonic()
            pending.extend(e for e in batch if isinstance(e, (Started, Finished)))
            barriers.extend(e for e in batch if isinstance(e, Barrier))
            try:
                write(pending)
                written, pending, failures = pending, [], 0
                self._report(written)
            except Exception:  # keep the events and try again: the state must end up right
                failures += 1
                logger.exception("Writing %d job state changes failed (try %d)", len(pending), failures)
                connection.close()
                time.sleep(min(5.0, 0.2 * failures))
            if not pending:
                for barrier in barriers:
                    barrier.done.set()
                barriers = []
            # At shutdown, keep trying for a while (a database restarting); what is still
            # unwritten then is repaired by the lost-message scan (jobs.recovery).
            if stopping and (not pending or time.monotonic() - stopping_since > SHUTDOWN_SECONDS):
                if pending:
                    logger.error("Giving up on %d job state changes at shutdown", len(pending))
                connection.close()
                return

    def _report(self, events: list[Started | Finished]) -> None:
        finished = [e for e in events if isinstance(e, Finished)]
        if finished and self._on_written is not None:
            try:
                self._on_written(finished)
            except Exception:  # metrics must never hold up the job states
                logger.exception("Recording metrics for %d finished jobs failed", len(finished))


def write(events: list[Started | Finished]) -> None:
    """Write a batch of events in one transaction, merging each attempt's start and finish."""
    if not events:
        return
    # Keyed by attempt, the latest report winning: an attempt that waited for the database
    # runs again under the same number, and its start and finish may share a batch with
    # the earlier ones.
    starts: dict[tuple[uuid.UUID, int], Started] = {}
    pairs: dict[tuple[uuid.UUID, int], tuple[Started, Finished]] = {}
    lone: dict[tuple[uuid.UUID, int], Finished] = {}
    cancels: list[Finished] = []
    for event in events:
        key = (event.job_id, event.attempt)
        if isinstance(event, Finished) and event.status == "cancelled":
            cancels.append(event)  # written last, over the start it may share a batch with
        elif isinstance(event, Started):
            starts[key] = event
        elif key in starts:
            pairs[key] = (starts.pop(key), event)
        else:
            lone[key] = event
    combined = list(pairs.values())
    finishes = list(lone.values())
    from jobs.models import Job

    table = connection.ops.quote_name(Job._meta.db_table)
    short = False  # did an update of a started job touch fewer rows than it named?
    with transaction.atomic(), connection.cursor() as cursor:
        if finishes:
            # A success keeps the error of the attempt before it, for the record.
            ok = [f for f in finishes if not f.error]
            failed = [f for f in finishes if f.error]
            if ok:
                cursor.executemany(
                    f"UPDATE {table} SET status = %s, finished_at = %s WHERE id = %s AND attempts <= %s",
                    [(f.status, _dt(f.at), _pk(f.job_id), f.attempt) for f in ok],
                )
            if failed:
                cursor.executemany(
                    f"UPDATE {table} SET status = %s, finished_at = %s, last_error = %s, error_fingerprint = %s, "
                    f"traceback = %s, broker_message_id = %s, due_at = %s "
                    f"WHERE id = %s AND attempts <= %s AND {NOT_OVER_FINAL}",
                    [
                        (
                            f.status,
                            _dt(f.at),
                            f.error,
                            fingerprint(f.actor_name, f.error),
                            f.traceback,
                            f.broker_message_id,
                            _next(f),
                            _pk(f.job_id),
                            f.attempt,
                            f.counted,
                            f.status,
                        )
                        for f in failed
                    ],
                )
        if combined:
            ok = [(s, f) for s, f in combined if not f.error]
            failed = [(s, f) for s, f in combined if f.error]
            touched = 0
            if ok:
                touched += _write_succeeded(cursor, table, ok)
            if failed:
                cursor.executemany(
                    f"UPDATE {table} SET status = %s, attempts = %s, started_at = %s, finished_at = %s, "
                    "worker = %s, last_error = %s, error_fingerprint = %s, traceback = %s, broker_message_id = %s, "
                    f"due_at = %s WHERE id = %s AND attempts <= %s AND {NOT_OVER_FINAL}",
                    [
                        (
                            f.status,
                            s.attempt,
                            _dt(s.at),
                            _dt(f.at),
                            s.worker,
                            f.error,
                            fingerprint(s.actor_name, f.error),
                            f.traceback,
                            f.broker_message_id,
                            _next(f),
                            _pk(s.job_id),
                            s.attempt,
                            f.counted,
                            f.status,
                        )
                        for s, f in failed
                    ],
                )
                touched += cursor.rowcount
            short = touched < len(combined)
        if starts:
            cursor.executemany(
                f"UPDATE {table} SET status = 'running', attempts = %s, started_at = %s, finished_at = NULL, "
                "worker = %s WHERE id = %s AND attempts <= %s AND status <> 'cancelled'",
                [(s.attempt, _dt(s.at), s.worker, _pk(s.job_id), s.attempt) for s in starts.values()],
            )
            short = short or cursor.rowcount < len(starts)
        if short:
            begun = [s for s, _ in combined] + list(starts.values())
            _adopt(cursor, table, begun, {(s.job_id, s.attempt): f for s, f in combined})
        changed: list[Finished] = []
        for cancel in cancels:  # rare: one statement each, to know which rows changed
            # Cancelled while it ran (its checkpoint), or a delivery refused because the job
            # was cancelled: final, unless the job has already finished otherwise. A job
            # the cancel itself marked `cancelled` is not changed again (its hooks ran then).
            cursor.execute(
                f"UPDATE {table} SET status = 'cancelled', finished_at = %s "
                f"WHERE id = %s AND status IN ({_UNFINISHED})",
                [_dt(cancel.at), _pk(cancel.job_id)],
            )
            if cursor.rowcount:
                changed.append(cancel)
        _record_failed_attempts([e for e in events if isinstance(e, Finished) and e.error and e.counted])
        _enqueue_hooks([f for f in finishes + [f for _, f in combined] if f.status == "dead"], "dead")
        _enqueue_hooks(changed, "cancel")


_UNFINISHED = "'pending', 'scheduled', 'enqueued', 'retrying', 'running'"


def _enqueue_hooks(finishes: list[Finished], event: str) -> None:
    """The `on_dead` (or `on_cancel`) hooks of these jobs, as jobs written in the same
    transaction as their state, once per job generation, on the queue of the job."""
    from jobs import lifecycle
    from jobs.services import enqueue

    for finish in finishes:
        if not (finish.actor_name and lifecycle.hooks_for(finish.actor_name, event)):
            continue
        try:
            with transaction.atomic():
                # On the job's own queue: a flood of dead webhook deliveries (an endpoint
                # paused with a backlog) runs its hooks on the webhooks workers, never in
                # front of the orders' jobs on the default queue.
                enqueue(
                    "run_lifecycle_hooks",
                    str(finish.job_id),
                    event,
                    finish.generation,
                    key=f"lifecycle:{event}:{finish.job_id}:{finish.generation}",
                    queue=finish.queue_name or None,
                )
        except DatabaseError:
            raise  # the whole batch is tried again
        except Exception:  # a bug must not keep the job states from being written
            logger.exception("Could not write the %s hooks of job %s", event, finish.job_id)


def _record_failed_attempts(failed: list[Finished]) -> None:
    """Keep every failed attempt's error and traceback (failures are rare: a row each)."""
    if not failed:
        return
    from jobs.models import Job, JobAttempt

    existing = set(Job.objects.filter(pk__in={f.job_id for f in failed}).values_list("pk", flat=True))
    JobAttempt.objects.bulk_create(
        JobAttempt(
            job_id=f.job_id,
            number=f.attempt,
            status=f.status,
            worker=f.worker,
            started_at=f.started_at,
            finished_at=f.at,
            error=f.error,
            traceback=f.traceback,
        )
        for f in failed
        if f.job_id in existing
    )


def _write_succeeded(cursor: Any, table: str, done: list[tuple[Started, Finished]]) -> int:
    """The hot path: attempts that started and succeeded within one batch.

    PostgreSQL gets one UPDATE ... FROM (VALUES ...) for the whole batch (one statement
    to plan and run instead of one per job); SQLite's executemany is already a C loop.
    """
    if connection.vendor != "postgresql":
        from jobs.models import Job

        # The converters looked up once per batch, not twice per row through the proxy.
        db = connections[DEFAULT_DB_ALIAS]
        dt, pk = db.ops.adapt_datetimefield_value, Job._meta.pk.get_db_prep_value
        cursor.executemany(
            f"UPDATE {table} SET status = 'succeeded', attempts = %s, started_at = %s, finished_at = %s, "
            "worker = %s WHERE id = %s AND attempts <= %s",
            [(s.attempt, dt(s.at), dt(f.at), s.worker, pk(s.job_id, db), s.attempt) for s, f in done],
        )
        return cursor.rowcount
    rows = ", ".join(["(%s::uuid, %s::integer, %s::timestamptz, %s::timestamptz, %s::varchar)"] * len(done))
    cursor.execute(
        f"UPDATE {table} AS j SET status = 'succeeded', attempts = v.attempt, started_at = v.started, "
        f"finished_at = v.finished, worker = v.worker FROM (VALUES {rows}) "
        "AS v(id, attempt, started, finished, worker) WHERE j.id = v.id AND j.attempts <= v.attempt",
        [value for s, f in done for value in (s.job_id, s.attempt, s.at, f.at, s.worker)],
    )
    return cursor.rowcount


def _adopt(cursor: Any, table: str, begun: list[Started], finishes: dict[tuple[uuid.UUID, int], Finished]) -> None:
    """Jobs sent without a Job row (a plain `actor.send()`) get one when they start."""
    from jobs.models import Job

    ids = list({s.job_id for s in begun})
    placeholders = ", ".join(["%s"] * len(ids))
    cursor.execute(f"SELECT id FROM {table} WHERE id IN ({placeholders})", [_pk(i) for i in ids])
    known = {Job._meta.pk.to_python(row[0]) for row in cursor.fetchall()}
    rows = {}
    for s in begun:
        if s.job_id in known:
            continue
        finish = finishes.get((s.job_id, s.attempt))
        rows[s.job_id] = Job(
            id=s.job_id,
            actor_name=s.actor_name,
            queue_name=s.queue_name,
            args=s.args,
            kwargs=s.kwargs,
            status=finish.status if finish else Job.Status.RUNNING,
            attempts=s.attempt,
            worker=s.worker,
            created_at=s.at,
            enqueued_at=s.at,
            started_at=s.at,
            finished_at=finish.at if finish else None,
            last_error=finish.error if finish else "",
            error_fingerprint=fingerprint(s.actor_name, finish.error) if finish else "",
            traceback=finish.traceback if finish else "",
        )
    if rows:
        Job.objects.bulk_create(rows.values(), ignore_conflicts=True)


def _pk(job_id: uuid.UUID) -> Any:
    from jobs.models import Job

    return Job._meta.pk.get_db_prep_value(job_id, connection)


def _next(finish: Finished) -> Any:
    """The due time a failed attempt leaves on its row: its next attempt's, else none."""
    return _dt(finish.next_at) if finish.next_at is not None and finish.status == "retrying" else None


def _dt(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)
