"""Cancel: a waiting job never runs; a running job stops at its next checkpoint.

    jobs.cancel(job, by=request.user, reason="customer changed their mind")

- A `pending`, `scheduled`, `enqueued` or `retrying` job becomes `cancelled` at once, in
  one transaction with its audit row and its `on_cancel` hooks. It never runs, even if
  its message is already in Redis or a worker has fetched it: the cancel first marks
  the job in Redis, and the claim that every delivery must win before it runs
  (`jobs.claims`) refuses a marked job. Mark and claim meet in one Redis script each,
  so either the delivery claimed first (the cancel sees the claim) or the cancel marked
  first (the delivery is refused and records the job `cancelled`). A worker process
  claims the jobs it fetches as it fetches them, so a claim may belong to a job still
  waiting in that process: the cancel asks it, and its start gate answers for sure
  whether the job had started (then it is running) or now never will.
- A `running` job is asked to stop: its actor calls `jobs.checkpoint()` (or checks
  `jobs.cancel_requested()`) between steps, which raises `jobs.Cancelled`; the job then
  ends `cancelled` and its `on_cancel` hooks run on a worker. An actor with no
  checkpoints runs to its end and ends as it really ended; no retry of it runs.

Without Redis a cancel cannot guarantee that a message already sent does not run, so it
refuses (`CancelUnavailable`) and changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.db import transaction
from django.utils import timezone

from jobs import lifecycle
from jobs.claims import claims_for, job_key
from jobs.effects import current_job_key
from jobs.models import Job, JobAction

logger = logging.getLogger(__name__)

CANCELLED = "cancelled"  # it will never run (again)
REQUESTED = "requested"  # it is running: it stops at its next checkpoint


class Cancelled(Exception):
    """Raised inside a job (by `checkpoint()`) when it was cancelled while running: the
    job ends `cancelled` and is not retried."""


class CancelUnavailable(Exception):
    """Redis did not answer: nothing was cancelled (try again)."""


def cancel(job_or_id: Any, *, by: Any = None, reason: str = "") -> str | None:
    """Cancel a job. Returns "cancelled" (it will never run), "requested" (it is running
    and stops at its next checkpoint) or None (it has finished, or there is no such job).
    Raises CancelUnavailable when Redis does not answer."""
    pk = getattr(job_or_id, "pk", job_or_id)
    user = by if getattr(by, "is_authenticated", False) else None
    for _ in range(10):  # the row changed under us (a start, a retry): look again
        job = Job.objects.filter(pk=pk).first()
        if job is None or job.status not in Job.CANCELLABLE:
            return None
        generation = job.options.get("buzzer_generation", 0)
        key = job_key(str(job.pk), generation)
        claims = claims_for(dramatiq.get_broker())
        try:
            _, claim = claims.mark_cancelled(key)
        except Exception as exc:
            raise CancelUnavailable(f"Redis did not answer ({exc}); nothing was cancelled.") from exc
        running = _running_now(job, claim, claims, key)
        with transaction.atomic():
            if running:
                options = {**job.options, "buzzer_cancel_requested": True}
                if job.options.get("buzzer_cancel_requested"):
                    return REQUESTED  # asked before: one audit row
                if not Job.objects.filter(pk=job.pk, status=job.status, options=job.options).update(options=options):
                    continue
                JobAction.objects.create(job=job, kind=JobAction.Kind.CANCEL_REQUESTED, user=user, reason=reason)
                logger.info("Job %s (%s): cancellation requested by %s", job.pk, job.actor_name, by or "the system")
                return REQUESTED
            won = Job.objects.filter(pk=job.pk, status=job.status, attempts=job.attempts, options=job.options).update(
                status=Job.Status.CANCELLED, finished_at=timezone.now()
            )
            if not won:
                continue
            JobAction.objects.create(job=job, kind=JobAction.Kind.CANCEL, user=user, reason=reason)
            job.refresh_from_db()
            lifecycle.run("cancel", job)  # the business object follows, in this transaction
        logger.info("Job %s (%s) cancelled by %s", job.pk, job.actor_name, by or "the system")
        return CANCELLED
    return None


def cancel_many(job_ids: Any, *, by: Any = None, reason: str = "") -> dict[str, int]:
    counts = {CANCELLED: 0, REQUESTED: 0}
    for pk in job_ids:
        outcome = cancel(pk, by=by, reason=reason)
        if outcome:
            counts[outcome] += 1
    return counts


def _running_now(job: Job, claim: str | None, claims: Any, key: str) -> bool:
    """Is a delivery of this job running at this moment? The claim says which attempt
    was last taken and by whom; the row may lag it by a batch of the worker's writer.
    A worker process that claims jobs as it fetches them may hold one that has not
    started yet: it is asked, and answers for sure (see `jobs.claims.StartGate`)."""
    if not claim:
        return False
    number, _, holder = claim.partition("|")
    if holder == "free":
        return False  # waiting to run again as the same attempt
    attempt = int(number)
    if attempt > job.attempts:  # started, its row not saying so yet; or fetched, not started
        try:
            return not claims.ask_holder(key, holder)
        except Exception:  # Redis away: the mark is set; say only what is sure
            logger.warning("Could not ask worker %s about job %s", holder, job.pk, exc_info=True)
            return True
    return attempt == job.attempts and job.status == Job.Status.RUNNING


def cancel_requested() -> bool:
    """Inside a running job: was it cancelled? (One Redis round trip; call it between
    steps, not per row.)"""
    key = current_job_key()
    if key is None:
        return False
    try:
        return claims_for(dramatiq.get_broker()).cancel_requested(key)
    except Exception:
        logger.warning("Could not check whether job %s was cancelled", key, exc_info=True)
        return False


def checkpoint() -> None:
    """Inside a running job: stop here (raise Cancelled) if the job was cancelled."""
    if cancel_requested():
        raise Cancelled("The job was cancelled while it ran.")
