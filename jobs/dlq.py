"""The dead-letter queue: retry or discard dead jobs, one at a time or in bulk.

A dead job keeps its whole message in its row (actor, queue, arguments, options), so it
can be re-sent after Dramatiq has long dropped its own copy. Retrying re-sends the same
job (same id, same arguments) to its original queue with its attempts reset, as a new
generation whose claims never collide with those of the run that died. A conditional
update picks the one caller that re-sends: concurrent clicks re-send once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import dramatiq
from django.db import transaction
from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job, JobAction
from jobs.services import dispatch

logger = logging.getLogger(__name__)

BATCH = 500


def _forget_dead_letter(job: Job) -> None:
    """Take the job's message out of Dramatiq's own dead-letter set (best effort)."""
    client = getattr(dramatiq.get_broker(), "client", None)
    if client is None or not job.broker_message_id:
        return
    namespace = dramatiq.get_broker().namespace
    xq = f"{namespace}:{job.queue_name}.XQ"
    try:
        with client.pipeline() as pipe:
            pipe.zrem(xq, job.broker_message_id)
            pipe.hdel(f"{xq}.msgs", job.broker_message_id)
            pipe.execute()
    except Exception as exc:  # noqa: BLE001 - Redis expires it after 7 days anyway
        logger.warning("Could not remove job %s from Dramatiq's dead-letter set: %s", job.id, exc)


def retry(job_id: Any, *, user: Any = None, reason: str = "") -> bool:
    """Re-send a dead job. Returns True when this call re-sent it (False: not dead, or
    someone else was first)."""
    job = Job.objects.filter(pk=job_id, status=Job.Status.DEAD).first()
    if job is None:
        return False
    if job.actor_name not in dramatiq.get_broker().actors:  # e.g. a quarantined undecodable message
        logger.warning("Job %s cannot be retried: no actor %r here; discard it instead", job.id, job.actor_name)
        return False
    options = dict(job.options)
    options["buzzer_generation"] = options.get("buzzer_generation", 0) + 1
    with transaction.atomic():
        won = Job.objects.filter(pk=job.pk, status=Job.Status.DEAD, options=job.options).update(
            status=Job.Status.PENDING,
            attempts=0,
            options=options,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            worker="",
        )
        if not won:
            return False
        JobAction.objects.create(job=job, kind=JobAction.Kind.RETRY, user=_user(user), reason=reason)
        broker_message_id = job.broker_message_id
        job.refresh_from_db()
        job.broker_message_id = broker_message_id
        lifecycle.run("retry", job)  # the business object comes back with its job

        def send() -> None:
            _forget_dead_letter(job)
            dispatch([job])  # refused by Redis: it stays pending and the sweep sends it

        transaction.on_commit(send)
    logger.info("Dead job %s (%s) re-sent by %s", job.id, job.actor_name, user or "the system")
    return True


def discard(job_id: Any, *, user: Any = None, reason: str) -> bool:
    """Take a dead job out of the dead-letter queue for good, keeping the reason."""
    job = Job.objects.filter(pk=job_id, status=Job.Status.DEAD).first()
    if job is None:
        return False
    # No actor check here: a quarantined (undecodable) message names no actor that exists,
    # and discarding is the one thing to do with it.
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, status=Job.Status.DEAD).update(
            status=Job.Status.DISCARDED, finished_at=timezone.now()
        ):
            return False
        JobAction.objects.create(job=job, kind=JobAction.Kind.DISCARD, user=_user(user), reason=reason)
        lifecycle.run("discard", job)
        transaction.on_commit(lambda: _forget_dead_letter(job))
    logger.info("Dead job %s (%s) discarded by %s: %s", job.id, job.actor_name, user, reason)
    return True


def _dead_ids(jobs: QuerySet[Job] | Iterable[Any]) -> Iterable[list[Any]]:
    if isinstance(jobs, QuerySet):
        ids = list(jobs.filter(status=Job.Status.DEAD).order_by().values_list("pk", flat=True))
    else:
        ids = list(jobs)
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def retry_many(jobs: QuerySet[Job] | Iterable[Any], *, user: Any = None, reason: str = "") -> int:
    """Retry every dead job among `jobs`; returns how many this call re-sent."""
    return sum(retry(pk, user=user, reason=reason) for batch in _dead_ids(jobs) for pk in batch)


def discard_many(jobs: QuerySet[Job] | Iterable[Any], *, user: Any = None, reason: str) -> int:
    return sum(discard(pk, user=user, reason=reason) for batch in _dead_ids(jobs) for pk in batch)


def groups(queryset: QuerySet[Job] | None = None) -> list[dict[str, Any]]:
    """Dead jobs grouped by actor and error: the same failure a thousand times is one line."""
    queryset = Job.objects.all() if queryset is None else queryset
    return list(
        queryset.filter(status=Job.Status.DEAD)
        .values("actor_name", "last_error")
        .annotate(count=Count("pk"), latest=Max("finished_at"))
        .order_by("-count", "actor_name")
    )


def _user(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None
