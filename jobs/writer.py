"""Group commit for job state: one thread per worker process writes the state changes
of all its worker threads in batches, one short transaction each.

A worker thread that claims a job waits for the batch holding its claim (the claim
decides whether the job runs); finishing a job only queues the write. With 2 processes
this keeps the database at 2 writers instead of 16, which is what makes tracking
affordable on SQLite (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

CLAIMED = "claimed"
SKIP = "skip"

BATCH_LIMIT = 500


@dataclass
class Claim:
    job_id: uuid.UUID
    retries: int
    worker: str
    actor_name: str
    queue_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    now: datetime
    future: Future = field(default_factory=Future)


@dataclass
class Finish:
    job_id: uuid.UUID
    status: str
    now: datetime
    error: str = ""
    traceback: str = ""


@dataclass
class Barrier:
    done: threading.Event = field(default_factory=threading.Event)


class JobWriter:
    """Batches claims and finishes of jobs into few transactions."""

    def __init__(self, is_worker_alive: Callable[[str], bool]) -> None:
        self._is_worker_alive = is_worker_alive
        self._ops: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="buzzer-job-writer", daemon=True)
        self._thread.start()

    # --- called from worker threads ---------------------------------------------------
    def claim(self, op: Claim, timeout: float = 60.0) -> str:
        self._ops.put(op)
        return op.future.result(timeout=timeout)

    def finish(self, op: Finish) -> None:
        self._ops.put(op)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every write queued before this call is committed."""
        barrier = Barrier()
        self._ops.put(barrier)
        return barrier.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._stopping.set()
        self._ops.put(None)
        self._thread.join(timeout)

    # --- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        unwritten: list[Finish] = []
        barriers: list[Barrier] = []
        stopping = False
        failures = 0
        while True:
            batch: list[Any] = []
            try:
                # With finishes still unwritten (the database refused them), wake up to retry.
                batch.append(self._ops.get(timeout=0.5 if unwritten else None))
                while len(batch) < BATCH_LIMIT:
                    batch.append(self._ops.get_nowait())
            except queue.Empty:
                pass
            stopping = stopping or any(o is None for o in batch)
            claims = [o for o in batch if isinstance(o, Claim)]
            unwritten.extend(o for o in batch if isinstance(o, Finish))
            barriers.extend(o for o in batch if isinstance(o, Barrier))
            try:
                self._write(unwritten, claims)
                unwritten, failures = [], 0
            except Exception as exc:  # keep the finishes for the next round, fail the claims
                failures += 1
                logger.exception("Writing %d job state changes failed", len(unwritten) + len(claims))
                for claim in claims:
                    if not claim.future.done():
                        claim.future.set_exception(exc)
                connection.close()
                time.sleep(min(5.0, 0.2 * failures))
            if not unwritten:
                for barrier in barriers:
                    barrier.done.set()
                barriers = []
            if stopping and (not unwritten or failures >= 5):
                if unwritten:
                    logger.error("Giving up on %d job state changes at shutdown", len(unwritten))
                connection.close()
                return

    def _write(self, finishes: list[Finish], claims: list[Claim]) -> None:
        if not finishes and not claims:
            return
        connection.close_if_unusable_or_obsolete()
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Finishes first: a finish is always queued before any later claim of
                # the same job, and claims of one batch never finish in that batch.
                self._write_finishes(cursor, finishes)
                outcomes = [self._claim(cursor, claim) for claim in claims]
        for claim, outcome in zip(claims, outcomes, strict=True):
            claim.future.set_result(outcome)

    def _write_finishes(self, cursor: Any, finishes: list[Finish]) -> None:
        if not finishes:
            return
        table = _table()
        succeeded = [f for f in finishes if f.status == "succeeded"]
        others = [f for f in finishes if f.status != "succeeded"]
        if succeeded:
            cursor.executemany(
                f"UPDATE {table} SET status = 'succeeded', finished_at = %s WHERE id = %s AND status = 'running'",
                [(_dt(f.now), _pk(f.job_id)) for f in succeeded],
            )
        if others:
            cursor.executemany(
                f"UPDATE {table} SET status = %s, finished_at = %s, last_error = %s, "
                "traceback = %s WHERE id = %s AND status = 'running'",
                [(f.status, _dt(f.now), f.error, f.traceback, _pk(f.job_id)) for f in others],
            )

    def _claim(self, cursor: Any, claim: Claim) -> str:
        table = _table()
        claim_sql = (
            f"UPDATE {table} SET status = 'running', attempts = attempts + 1, "
            "started_at = %s, finished_at = NULL, worker = %s WHERE id = %s AND "
        )
        params = [_dt(claim.now), claim.worker, _pk(claim.job_id)]
        # Waiting jobs are claimed at once. A running job whose attempt counter is behind
        # this delivery's retry count had its previous attempt's finish not written yet.
        cursor.execute(
            claim_sql + "(status IN ('pending', 'enqueued', 'retrying') OR (status = 'running' AND attempts <= %s))",
            [*params, claim.retries],
        )
        if cursor.rowcount == 1:
            return CLAIMED
        cursor.execute(f"SELECT status, worker FROM {table} WHERE id = %s", [_pk(claim.job_id)])
        row = cursor.fetchone()
        if row is None:
            return self._adopt(claim)
        status, worker = row
        if status == "running" and worker != claim.worker and not self._is_worker_alive(worker):
            # Redelivered after its worker died mid-job: run it again.
            logger.warning("Job %s was running on dead worker %s; running it again", claim.job_id, worker)
            cursor.execute(claim_sql + "status = 'running'", params)
            return CLAIMED if cursor.rowcount == 1 else SKIP
        logger.info("Skipping job %s: it is %s", claim.job_id, status)
        return SKIP

    def _adopt(self, claim: Claim) -> str:
        """A message sent without a Job row (plain `actor.send()`): track it from now."""
        from jobs.models import Job

        Job.objects.bulk_create(
            [
                Job(
                    id=claim.job_id,
                    actor_name=claim.actor_name,
                    queue_name=claim.queue_name,
                    args=claim.args,
                    kwargs=claim.kwargs,
                    status=Job.Status.RUNNING,
                    attempts=1,
                    worker=claim.worker,
                    created_at=claim.now,
                    enqueued_at=claim.now,
                    started_at=claim.now,
                )
            ],
            ignore_conflicts=True,
        )
        return CLAIMED


def _table() -> str:
    from jobs.models import Job

    return connection.ops.quote_name(Job._meta.db_table)


def _pk(job_id: uuid.UUID) -> Any:
    from jobs.models import Job

    return Job._meta.pk.get_db_prep_value(job_id, connection)


def _dt(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def now() -> datetime:
    return timezone.now()
