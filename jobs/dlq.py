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
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import dramatiq
from django.db import transaction
from django.db.models import Count, Max, Min, QuerySet
from django.utils import timezone

from jobs import lifecycle
from jobs.fingerprints import Signature, signature
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
            # Refused by Redis: it stays pending and the sweep sends it. Marked at once:
            # the operator's next page shows the job enqueued.
            dispatch([job], mark_now=True)

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


@dataclass
class Group:
    """Dead jobs that failed the same way (one fingerprint): how many, since when, one example."""

    fingerprint: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    example: Job | None = None

    @property
    def signature(self) -> Signature:
        if self.example is None:
            return Signature("", "", "", self.fingerprint)
        return signature(self.example.actor_name, self.example.last_error)


def groups() -> list[Group]:
    """Every group of dead jobs, the largest first, without examples (see `with_examples`).

    One aggregate over the dead rows' partial index (status, error_fingerprint, finished_at,
    queue_name): it reads no job row, however many jobs there are.
    """
    rows = (
        Job.objects.filter(status=Job.Status.DEAD)
        .order_by()
        .values("error_fingerprint")
        .annotate(count=Count("*"), first_seen=Min("finished_at"), last_seen=Max("finished_at"))
    )
    found = [Group(r["error_fingerprint"], r["count"], r["first_seen"], r["last_seen"]) for r in rows]
    oldest = datetime.min.replace(tzinfo=dt_timezone.utc)
    found.sort(key=lambda g: (-g.count, -(g.last_seen or oldest).timestamp(), g.fingerprint))
    return found


def with_examples(page: list[Group]) -> list[Group]:
    """Attach to each group its latest dead job (one query for the page)."""
    latest = {g.fingerprint: g.last_seen for g in page if g.last_seen is not None}
    fields = ("id", "actor_name", "queue_name", "last_error", "error_fingerprint", "finished_at", "status")
    found: dict[str, Job] = {}
    if latest:
        candidates = (
            Job.objects.filter(
                status=Job.Status.DEAD, error_fingerprint__in=list(latest), finished_at__in=set(latest.values())
            )
            .order_by()  # unordered: the dead rows' (error_fingerprint, finished_at) index finds them
            .only(*fields)
        )
        for job in candidates:
            if job.finished_at == latest[job.error_fingerprint]:
                found.setdefault(job.error_fingerprint, job)
    for group in page:
        group.example = found.get(group.fingerprint) or group_jobs(group.fingerprint).only(*fields).first()
    return page


def group_jobs(fingerprint: str) -> QuerySet[Job]:
    """The dead jobs of one group."""
    return Job.objects.filter(status=Job.Status.DEAD, error_fingerprint=fingerprint)


def _user(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None
