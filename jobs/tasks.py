"""The jobs app's own actors."""

from __future__ import annotations

import logging

from jobs import lifecycle
from jobs.actors import actor

logger = logging.getLogger(__name__)

# Which state a job must still be in for the hooks of an event to run.
_STATE = {"dead": "dead", "cancel": "cancelled"}


@actor(max_retries=10, min_backoff=1_000, max_backoff=300_000, time_limit=300_000)
def run_lifecycle_hooks(job_id: str, event: str, generation: int) -> None:
    """The `on_dead` or `on_cancel` hooks of a job that went dead or was cancelled while
    it ran (written in the same transaction as that state)."""
    from jobs.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != _STATE[event] or job.options.get("buzzer_generation", 0) != generation:
        logger.info("Job %s is no longer %s (generation %s): its hooks are not run", job_id, _STATE[event], generation)
        return
    lifecycle.run(event, job)


@actor(max_retries=10, min_backoff=1_000, max_backoff=300_000, time_limit=300_000)
def run_dead_hooks(job_id: str, generation: int) -> None:
    """Kept for messages written before `run_lifecycle_hooks` existed."""
    run_lifecycle_hooks(job_id, "dead", generation)
